// Starts the embedded GraphiQL against this server's /graphql. A `?token=` in the
// address (the link the server logs at start) presets `Authorization: Bearer <token>`
// and is then removed from the address bar, so it does not stay in the history.
// Queries and mutations go over HTTP; subscriptions over a WebSocket on the same
// origin (graphql-ws), opened only when one is run.
(function start() {
  'use strict';
  const params = new URLSearchParams(window.location.search);
  const token = params.get('token');
  const headers = {};
  if (token && /^[A-Za-z0-9._~-]{1,256}$/.test(token)) {
    headers.Authorization = `Bearer ${token}`;
  }
  if (params.has('token')) {
    params.delete('token');
    const rest = params.toString();
    window.history.replaceState(null, '', window.location.pathname + (rest ? `?${rest}` : ''));
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
