// Live updates: one subscription to every product change, over a WebSocket to this
// origin (the graphql-ws client GraphiQL uses, vendored in vendor/graphiql/). Each change
// made by anyone (another tab, another client, another server instance) is handed to
// `onChange`; after a gap (the socket dropped, or the server said changes may have been
// missed) `onGap` asks for a full refresh. The header shows the state: "live" only while
// changes are actually arriving.
import { byId } from './dom.js';
import { PRODUCT_CHANGED } from './operations.js';

const RESUBSCRIBE_MS = 2000;

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

  function subscribe() {
    client.subscribe(
      { query: PRODUCT_CHANGED },
      {
        next: ({ data, errors }) => {
          if (data?.productChanged) onChange(data.productChanged);
          if (errors?.length) show('down', `not live: ${errors[0].message}`);
        },
        error: () => {
          show('down', 'not live: reconnecting…');
          setTimeout(subscribe, RESUBSCRIBE_MS);
        },
        complete: () => {
          // The server ends a subscription only when changes may have been missed.
          show('down', 'not live: resubscribing…');
          onGap();
          setTimeout(subscribe, RESUBSCRIBE_MS);
        },
      },
    );
  }
  subscribe();
}
