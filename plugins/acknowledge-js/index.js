// The component's export: the step around acknowledge.js.
import { exportStep } from './journey-host.js';
import { acknowledge } from './acknowledge.js';

export const step = exportStep(acknowledge);
