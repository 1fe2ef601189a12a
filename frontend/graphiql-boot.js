// Starts the embedded GraphiQL against this server's /graphql. A `#token=` in the
// address's fragment (the link the server prints at start; a fragment never reaches a
// server or a `Referer`) presets `Authorization: Bearer <token>` and is then removed
// from the address bar, so it does not stay in the history.
// Queries and mutations go over HTTP; subscriptions over a WebSocket on the same
// origin (graphql-ws), opened only when one is run.
(function start() {
  'use strict';
  const parts = window.location.hash.replace(/^#/, '').split('&').filter(Boolean);
  const found = parts.find((p) => p.startsWith('token='));
  const token = found === undefined ? null : decodeURIComponent(found.slice('token='.length));
  const headers = {};
  if (token && /^[A-Za-z0-9._~-]{1,256}$/.test(token)) {
    headers.Authorization = `Bearer ${token}`;
  }
  if (found !== undefined) {
    const rest = parts.filter((p) => !p.startsWith('token=')).join('&');
    window.history.replaceState(null, '', window.location.pathname + window.location.search + (rest ? `#${rest}` : ''));
  }
  const http = new URL('/graphql', window.location.href);
  const ws = new URL(http.href);
  ws.protocol = http.protocol === 'https:' ? 'wss:' : 'ws:';
  const fetcher = GraphiQL.createFetcher({
    url: http.href,
    wsClient: graphqlWs.createClient({
      url: ws.href,
      lazy: true,
      connectionParams: () => (headers.Authorization ? { Authorization: headers.Authorization } : {}),
    }),
  });
  const root = ReactDOM.createRoot(document.getElementById('graphiql'));
  root.render(
    React.createElement(GraphiQL, {
      fetcher,
      defaultHeaders: Object.keys(headers).length ? JSON.stringify(headers, null, 2) : undefined,
      shouldPersistHeaders: false,
      defaultEditorToolsVisibility: Object.keys(headers).length ? 'headers' : undefined,
    }),
  );
})();
