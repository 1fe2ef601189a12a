//! GraphiQL, served from the binary: `frontend/graphiql.html` and its bootstrap script,
//! with the pinned, checksummed GraphiQL and React builds of `frontend/vendor/graphiql/`
//! (see `SOURCES.json` and `refresh.sh` there). No request leaves for another host. The
//! admin token of a `#token=` link (a URL fragment, never sent to a server) is read by
//! the page's own script, so the server echoes nothing into the page. With
//! introspection off, a short page says why the playground is not there (it needs the
//! schema).
use axum::response::Response;

pub fn page(introspection: bool) -> Response {
    let file = if introspection {
        "graphiql.html"
    } else {
        "graphiql-off.html"
    };
    crate::web::embedded(file)
}
