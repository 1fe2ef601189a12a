// Live updates: one subscription to every product change, over a WebSocket to this
// origin (the graphql-ws client GraphiQL uses, vendored in vendor/graphiql/). Each change
// made by anyone (another tab, another client, another server instance) is handed to
// `onChange`; after a gap (the socket dropped, or the server said changes may have been
// missed) `onGap` asks for a full refresh. The header shows the state: "live" only while
// changes are actually arriving.
import { byId } from './dom.js';
import { PRODUCT_CHANGED } from './operations.js';

const RESUBSCRIBE_MS = 2000;
const MAX_WAIT_MS = 30_000;

/**
 * @param {{onChange: (change: {kind: string, id: string, version: number}) => void, onGap: () => void}} handlers
 */
export function createLive({ onChange, onGap }) {
  const status = byId('live-status');
  const show = (state, text) => {
    status.dataset.state = state;
    status.textContent = text;
  };
  if (typeof graphqlWs === 'undefined') {
    show('off', 'live updates unavailable');
    return;
  }
  const url = new URL('/graphql', window.location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  let connectedBefore = false;
  const client = graphqlWs.createClient({
    url: url.href,
    lazy: false,
    retryAttempts: Infinity,
    shouldRetry: () => true,
    retryWait: () => new Promise((resolve) => setTimeout(resolve, RESUBSCRIBE_MS)),
    keepAlive: 10_000,
    on: {
      connected: () => {
        show('live', 'live');
        // Changes made while the socket was down were not seen.
        if (connectedBefore) onGap();
        connectedBefore = true;
      },
      closed: () => show('down', 'not live: reconnecting…'),
    },
  });

  // Resubscribing after the server refused or ended a subscription waits longer each
  // time it fails before anything arrived (2 s doubling to 30 s, with jitter), so a
  // server at its limits is not hammered by every open tab.
  let wait = RESUBSCRIBE_MS;
  const again = () => {
    setTimeout(subscribe, wait * (0.75 + Math.random() / 2));
    wait = Math.min(wait * 2, MAX_WAIT_MS);
  };

  function subscribe() {
    let delivered = false;
    let refusal = null;
    client.subscribe(
      { query: PRODUCT_CHANGED },
      {
        next: ({ data, errors }) => {
          if (data?.productChanged) {
            delivered = true;
            wait = RESUBSCRIBE_MS;
            onChange(data.productChanged);
          }
          if (errors?.length) {
            refusal = errors[0];
            show('down', `not live: ${errors[0].message}`);
          }
        },
        error: () => {
          show('down', 'not live: reconnecting…');
          again();
        },
        complete: () => {
          // Ended by the server after it was running (changes may have been missed),
          // not refused at the start: the page reads everything again.
          const interrupted = /interrupted/.test(refusal?.message ?? '');
          if (delivered || interrupted) onGap();
          if (!refusal) show('down', 'not live: resubscribing…');
          again();
        },
      },
    );
  }
  subscribe();
}
