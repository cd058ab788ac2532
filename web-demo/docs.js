/*
 * docs.js: /docs renders the hub's own /openapi.json with Swagger UI
 * (vendored under /vendor/swagger-ui, no CDN). "Try it out" calls this hub.
 */
/* global SwaggerUIBundle */
window.addEventListener('DOMContentLoaded', () => {
  SwaggerUIBundle({
    url: '/openapi.json',
    dom_id: '#swagger-ui',
    deepLinking: true,
    docExpansion: 'list',
    defaultModelsExpandDepth: 0,
    validatorUrl: null, // never call swagger.io
    tryItOutEnabled: false,
  });
});
