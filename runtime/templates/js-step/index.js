// The component's exports: the step around step.js.
import { exportStep } from './journey-host.js';
import { greet } from './step.js';

export const step = exportStep(greet);
