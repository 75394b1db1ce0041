// Starts Swagger UI on the /docs page with the settings the page carries (templates/swagger_ui.html).
window.addEventListener("load", function () {
  var container = document.getElementById("swagger-ui");
  var config = JSON.parse(container.dataset.config);
  config.url = container.dataset.specUrl;
  config.domNode = container;
  window.ui = SwaggerUIBundle(config);
});
