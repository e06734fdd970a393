// The component's export: the channel around chat.js.
import { exportChannel } from './journey-channel.js';
import { interpret, render } from './chat.js';

export const channel = exportChannel({ render, interpret });
