//! Generated hostile input: thousands of malformed and hostile queries and variables,
//! by POST and GET, with and without the admin token; and numbers at and past every
//! limit in every argument that takes one. Every answer must be valid JSON with a
//! documented status, no error may be internal, and the server must stay up.
use serde_json::{Value, json};

use crate::harness::{Backend, TOKEN, spawn_app};

/// The seed module's splitmix64: deterministic, so a failure reproduces from its case number.
struct Rng(larder::seed::Rng);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn below(&mut self, n: usize) -> usize {
        self.0.below(n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const SEEDS: &[&str] = &[
    "{ product(id: \"1\") { id name price category { name } } }",
    "query($id: ID!) { product(id: $id) { name } }",
    "{ products(first: 5, filter: { search: \"a\", minPrice: \"1\" }, orderBy: { field: PRICE, direction: DESC }) { totalCount edges { cursor node { name } } pageInfo { endCursor } } }",
    "query($f: ProductFilter, $n: Int!, $a: String) { products(filter: $f, first: $n, after: $a) { nodes { id } } }",
    "{ categories { name productCount products(first: 2) { nodes { name } } } }",
    "query($ids: [ID!]!) { productsByIds(ids: $ids) { id } }",
    "mutation($i: CreateProductInput!) { createProduct(input: $i) { id } }",
    "mutation($id: ID!, $i: UpdateProductInput!) { updateProduct(id: $id, input: $i) { version } }",
    "mutation { deleteProduct(id: \"999999\") { id } }",
    "{ cacheStats { hits entities { kind } } }",
    "{ __schema { types { name fields { name } } } }",
    "fragment F on Product { name } { product(id: \"1\") { ...F } }",
];

const TOKENS: &[&str] = &[
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ":",
    "$",
    "!",
    "...",
    "@include(if: true)",
    "@skip",
    "\"",
    "\"\"\"",
    "#",
    "\n",
    "query",
    "mutation",
    "subscription",
    "fragment",
    "on",
    "null",
    "true",
    "-1",
    "1e309",
    "99999999999999999999",
    "product",
    "products",
    "__typename",
    "__schema",
    "id",
    "first:",
    "after:",
    "\\u0000",
    "é",
    "😀",
    "\u{0}",
    ",",
];

fn mutate(rng: &mut Rng, base: &str) -> String {
    let mut s: Vec<char> = base.chars().collect();
    for _ in 0..1 + rng.below(6) {
        match rng.below(6) {
            0 if !s.is_empty() => {
                let at = rng.below(s.len());
                s.remove(at);
            }
            1 => {
                let at = rng.below(s.len() + 1);
                for (k, c) in rng.pick(TOKENS).chars().enumerate() {
                    s.insert(at + k, c);
                }
            }
            2 if !s.is_empty() => {
                let at = rng.below(s.len());
                s.truncate(at);
            }
            3 => {
                let n = 1 + rng.below(200);
                let open = *rng.pick(&["{", "[", "("]);
                s.splice(0..0, open.repeat(n).chars());
            }
            4 if !s.is_empty() => {
                let at = rng.below(s.len());
                s[at] = char::from_u32(rng.below(0x2FFFF) as u32).unwrap_or('?');
            }
            _ => s.extend(base.chars()),
        }
    }
    s.into_iter().collect()
}

fn value(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth > 3 { 6 } else { 9 }) {
        0 => Value::Null,
        1 => json!(rng.next() as i64),
        2 => json!(f64::from_bits(rng.next())),
        3 => json!(
            rng.pick(&[
                "",
                "1",
                "abc",
                "-5",
                "1.999",
                "9".repeat(400).as_str(),
                "<img src=x onerror=alert(1)>",
                "\u{0}"
            ])
            .to_string()
        ),
        4 => json!(rng.below(2) == 0),
        5 => json!("x".repeat(rng.below(3000))),
        6 => Value::Array((0..rng.below(5)).map(|_| value(rng, depth + 1)).collect()),
        _ => {
            let keys = [
                "name",
                "price",
                "category",
                "stockQuantity",
                "description",
                "search",
                "minPrice",
                "categoryId",
                "inStock",
                "zzz",
            ];
            Value::Object(
                (0..rng.below(6))
                    .map(|_| (rng.pick(&keys).to_string(), value(rng, depth + 1)))
                    .collect(),
            )
        }
    }
}

fn variables(rng: &mut Rng) -> Value {
    let names = ["id", "i", "f", "n", "a", "ids", "x"];
    Value::Object(
        (0..rng.below(5))
            .map(|_| (rng.pick(&names).to_string(), value(rng, 0)))
            .collect(),
    )
}

#[tokio::test]
async fn thousands_of_hostile_requests_get_json_answers_and_never_an_internal_error() {
    let app = spawn_app(&Backend::Embedded).await;
    app.create("Seed", "1.00", "C", 1).await;
    let url = format!("{}/graphql", app.base);
    let mut rng = Rng(larder::seed::Rng(0x001a_2de4));
    let allowed = [200u16, 400, 405, 406, 413, 415];
    for case in 0..3000 {
        let query = match rng.below(4) {
            0 => (0..1 + rng.below(40))
                .map(|_| *rng.pick(TOKENS))
                .collect::<Vec<_>>()
                .join(" "),
            _ => {
                let base = *rng.pick(SEEDS);
                mutate(&mut rng, base)
            }
        };
        let vars = variables(&mut rng);
        let admin = rng.below(2) == 0;
        let req = match rng.below(5) {
            0 => app.client.get(&url).query(&[("query", query.as_str()), ("variables", &vars.to_string())]),
            1 => app.client.post(&url).header("content-type", "application/json").body(mutate(&mut rng, &json!({ "query": query }).to_string())),
            _ => app.client.post(&url).json(&json!({ "query": query, "variables": vars, "operationName": if rng.below(8) == 0 { json!("Nope") } else { Value::Null } })),
        };
        let req = if admin { req.bearer_auth(TOKEN) } else { req };
        let req = match rng.below(6) {
            0 => req.header("accept", "application/graphql-response+json"),
            1 => req.header(
                "accept",
                *rng.pick(&["text/html", "application/*", "image/png", "*/*;q=0"]),
            ),
            _ => req,
        };
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("case {case}: no answer: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert!(
            allowed.contains(&status),
            "case {case}: status {status} for {query:?}: {text}"
        );
        if text.trim_start().starts_with('<') {
            // GraphiQL for a browser GET without a query: the one HTML answer.
            assert!(
                text.contains("GraphiQL") || text.contains("graphiql"),
                "case {case}"
            );
            continue;
        }
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("case {case}: not JSON ({status}): {text}"));
        assert!(body.is_object(), "case {case}: {text}");
        assert!(
            !text.contains("INTERNAL_SERVER_ERROR"),
            "case {case}: internal error for {query:?} / {vars}: {text}"
        );
    }
    let r = app.gql("{ products { totalCount } }", json!({})).await;
    assert!(r.ok()["products"]["totalCount"].as_u64().unwrap() >= 1);
}

/// Numbers at and past every limit, as JSON numbers and strings, in variables and as
/// literals.
const EXTREMES: &[&str] = &[
    "0",
    "-0",
    "-1",
    "1e309",
    "-1e309",
    "1e28",
    "1e-400",
    "1E+5",
    "2147483647",
    "2147483648",
    "-2147483648",
    "-2147483649",
    "9223372036854775807",
    "18446744073709551616",
    "79228162514264337593543950335",
    "79228162514264337593543950336",
    "1000000000000000000000000000",
    "0.0000000000000000000000000001",
    "0.00000000000000000000000000001",
    "99999999999999999999999999999999999999999",
    "100000000.01",
    "12.345",
];

/// Strings that look like numbers, or nearly.
const NUMBER_LIKE: &[&str] = &[
    "NaN",
    "nan",
    "Infinity",
    "-Infinity",
    "inf",
    "0x10",
    " 5 ",
    "1_000",
    "",
    "1e",
    "--1",
    "١٢",
];

/// Every argument that takes a number or an id: (document with `$v`, its type).
const SITES: &[(&str, &str)] = &[
    ("query($v: ID!) { product(id: $v) { id } }", "ID!"),
    (
        "query($v: [ID!]!) { productsByIds(ids: $v) { id } }",
        "[ID!]!",
    ),
    (
        "query($v: Int!) { products(first: $v) { totalCount } }",
        "Int!",
    ),
    (
        "query($v: ID) { products(filter: { categoryId: $v }) { totalCount } }",
        "ID",
    ),
    (
        "query($v: Decimal) { products(filter: { minPrice: $v }) { totalCount } }",
        "Decimal",
    ),
    (
        "query($v: Decimal) { products(filter: { maxPrice: $v }) { totalCount } }",
        "Decimal",
    ),
    ("query($v: ID!) { category(id: $v) { id } }", "ID!"),
    (
        "query($v: Int!) { categories { products(first: $v) { totalCount } } }",
        "Int!",
    ),
    (
        "query($v: Int!) { cachePerformance(scenario: SINGLE_PRODUCT, iterations: $v) { speedup } }",
        "Int!",
    ),
    (
        "mutation($v: Decimal!) { createProduct(input: { name: \"N\", price: $v, category: \"C\" }) { id } }",
        "Decimal!",
    ),
    (
        "mutation($v: Int!) { createProduct(input: { name: \"N\", price: \"1\", category: \"C\", stockQuantity: $v }) { id } }",
        "Int!",
    ),
    (
        "mutation($v: ID!) { updateProduct(id: $v, input: { stockQuantity: 1 }) { id } }",
        "ID!",
    ),
    (
        "mutation($v: Decimal) { updateProduct(id: \"1\", input: { price: $v }) { id } }",
        "Decimal",
    ),
    (
        "mutation($v: Int) { updateProduct(id: \"1\", input: { stockQuantity: $v }) { id } }",
        "Int",
    ),
    ("mutation($v: ID!) { deleteProduct(id: $v) { id } }", "ID!"),
];

#[tokio::test]
async fn numeric_extremes_in_every_argument_get_clean_answers() {
    crate::harness::each_backend(|b| async move {
        let app = crate::harness::spawn_app(&b).await;
        app.create("Seed", "1.00", "C", 1).await;
        let url = format!("{}/graphql", app.base);
        let mut cases = 0;
        for (doc, ty) in SITES {
            let list = ty.starts_with('[');
            let values = EXTREMES.iter().chain(NUMBER_LIKE);
            for raw in values {
                // As a JSON number when it is one, and as a string.
                let mut forms: Vec<Value> = vec![json!(raw)];
                if let Ok(n) = serde_json::from_str::<serde_json::Number>(raw) {
                    forms.push(Value::Number(n));
                }
                for v in forms {
                    let v = if list { json!([v]) } else { v };
                    let body = json!({ "query": doc, "variables": { "v": v } });
                    check(&app, &url, body, &format!("{doc} with {v}")).await;
                    cases += 1;
                }
                // As a literal in the document.
                let literal = if EXTREMES.contains(raw) {
                    raw.to_string()
                } else {
                    format!("{raw:?}")
                };
                let literal = if list {
                    format!("[{literal}]")
                } else {
                    literal
                };
                let inline = doc
                    .replacen(&format!("($v: {ty})"), "", 1)
                    .replace("$v", &literal);
                check(&app, &url, json!({ "query": inline }), &inline).await;
                cases += 1;
            }
        }
        assert!(cases > 600, "{cases}");
        // Still serving, and nothing was half-written: one product, the seed.
        let r = app.gql("{ products { totalCount } }", json!({})).await;
        let n = r.ok()["products"]["totalCount"].as_u64().unwrap();
        assert!(n >= 1, "{n}");
    })
    .await;
}

/// One request: a JSON answer with a documented status, never an internal error or a
/// dropped connection.
async fn check(app: &crate::harness::TestApp, url: &str, body: Value, case: &str) {
    let resp = app
        .client
        .post(url)
        .bearer_auth(TOKEN)
        .body(body.to_string())
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{case}: no answer: {e}"));
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert!(
        [200, 400].contains(&status),
        "{case}: status {status}: {text}"
    );
    let parsed: Value =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("{case}: not JSON: {text}"));
    assert!(
        !text.contains("INTERNAL_SERVER_ERROR"),
        "{case}: internal error: {parsed}"
    );
}
