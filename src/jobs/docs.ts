import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pageRoutes, sendFile } from '../node/page-routes.js';

const swaggerDir = dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));

/** The assets of Swagger UI that `/docs` loads, from the swagger-ui-dist package (no CDN). */
const assets: Record<string, string> = {
  'swagger-ui.css': 'text/css; charset=utf-8',
  'swagger-ui-bundle.js': 'application/javascript; charset=utf-8',
  'swagger-ui-standalone-preset.js': 'application/javascript; charset=utf-8',
  'favicon-32x32.png': 'image/png',
};

/**
 * The page: relative urls only, so it works behind a proxy that adds a path prefix. A node
 * with `--token` answers the document with 401; the page then asks for the token once and
 * keeps it in the browser's local storage.
 */
const page = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>kitchensink jobs</title>
<link rel="stylesheet" href="docs/swagger-ui.css">
<link rel="icon" type="image/png" href="docs/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script src="docs/swagger-ui-standalone-preset.js"></script>
<script>
(async () => {
  const spec = 'api/v1/openapi.json';
  let token = localStorage.getItem('ks-token') || '';
  const auth = () => (token ? { authorization: 'Bearer ' + token } : {});
  let answer = await fetch(spec, { headers: auth() });
  while (answer.status === 401) {
    token = prompt('This kitchensink node needs its token (--token):') || '';
    if (!token) break;
    answer = await fetch(spec, { headers: auth() });
    if (answer.ok) localStorage.setItem('ks-token', token);
  }
  // By url, not by content: the document's relative server then resolves against its own url.
  window.ui = SwaggerUIBundle({
    url: spec,
    dom_id: '#swagger-ui',
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: 'BaseLayout',
    requestInterceptor: (request) => {
      Object.assign(request.headers, auth());
      return request;
    },
  });
})();
</script>
</body>
</html>
`;

/** `GET /docs`: Swagger UI of every job; its assets under `/docs/`. */
export function docsRoutes() {
  return pageRoutes('docs', (ctx, asset) => {
    if (!asset) {
      ctx.type = 'text/html; charset=utf-8';
      ctx.body = page;
      return true;
    }
    if (!(asset in assets)) return false;
    sendFile(ctx, join(swaggerDir, asset), assets[asset], 86_400);
    return true;
  });
}
