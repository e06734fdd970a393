// The component's export: the channel around channel.js.
import { exportChannel } from './journey-channel.js';
import { interpret, parseCallback, render } from './channel.js';

export const channel = exportChannel({ render, interpret, parseCallback });
