// hook.js - the echo hook in JavaScript: logs each event's canonical line
// (see canonical.js) and throws on the custom event `conformance.throw`.

import { log } from 'hookhost:hooks/log@0.1.0';
import { canonical } from './canonical.js';

export const handler = {
  handle(event) {
    if (event.kind.tag === 'custom' && event.kind.val === 'conformance.throw') {
      throw new Error('conformance.throw');
    }
    log('info', canonical(event));
  },
};
