// Every GraphQL operation the dashboard sends, and nothing else.
//
// One module on purpose: tests/browser/operations.test.mjs validates each export against
// schema.graphql, so a schema change that breaks the page fails a test instead of a demo.
// Each operation is named; the name is what the request log shows.

// Fragments are appended to the operations that spread them.
const PRODUCT_ROW = `
fragment ProductRow on Product {
  id
  name
  price
  stockQuantity
  inStock
  version
  category { id name }
}`;

const PRODUCT_FULL = `
fragment ProductFull on Product {
  ...ProductRow
  description
  createdAt
  updatedAt
}
${PRODUCT_ROW}`;

export const PRODUCTS_PAGE = `
query ProductsPage($filter: ProductFilter, $orderBy: ProductOrder, $first: Int!, $after: String) {
  products(filter: $filter, orderBy: $orderBy, first: $first, after: $after) {
    totalCount
    nodes { ...ProductRow }
    pageInfo { hasNextPage endCursor }
  }
}
${PRODUCT_ROW}`;

export const PRODUCT_DETAILS = `
query ProductDetails($id: ID!) {
  product(id: $id) { ...ProductFull }
}
${PRODUCT_FULL}`;

export const CATEGORIES = `
query Categories {
  categories { id name productCount }
}`;

export const CACHE_STATS = `
query CacheStats {
  cacheStats {
    backend
    connected
    hits
    misses
    hitRate
    errors
    sqlStatements
    entities { kind hits misses hitRate errors fills fillsRejected invalidations }
    redis { version usedMemoryBytes connectedClients }
  }
}`;

const LATENCY = `p50Ms p95Ms meanMs minMs maxMs sqlStatementsPerRun cacheRoundTripsPerRun`;

export const CACHE_PERFORMANCE = `
query CachePerformance($scenario: PerformanceScenario!, $iterations: Int!) {
  cachePerformance(scenario: $scenario, iterations: $iterations) {
    scenario
    iterations
    cached { ${LATENCY} }
    uncached { ${LATENCY} }
    speedup
  }
}`;

export const CREATE_PRODUCT = `
mutation CreateProduct($input: CreateProductInput!) {
  createProduct(input: $input) { ...ProductFull }
}
${PRODUCT_FULL}`;

export const UPDATE_PRODUCT = `
mutation UpdateProduct($id: ID!, $input: UpdateProductInput!) {
  updateProduct(id: $id, input: $input) { ...ProductFull }
}
${PRODUCT_FULL}`;

export const DELETE_PRODUCT = `
mutation DeleteProduct($id: ID!) {
  deleteProduct(id: $id) { id name }
}`;

export const CLEAR_CACHE = `
mutation ClearCache {
  clearCache { backend cleared epoch }
}`;

export const RESET_CACHE_STATS = `
mutation ResetCacheStats {
  resetCacheStats { hits }
}`;

// Sent over the WebSocket (live.js), not by api.js.
export const PRODUCT_CHANGED = `
subscription ProductChanged {
  productChanged { kind id version }
}`;
