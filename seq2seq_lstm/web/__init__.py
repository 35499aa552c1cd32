"""The browser page of ``s2s export --format web``: its sources (index.html, JavaScript modules, the
pinned npm packages), the exporter that assembles a servable folder, and a headless-Chromium driver."""
