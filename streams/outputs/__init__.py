"""Where alerts leave: webhooks (with their outbox), Alertmanager, the HTTP API and dashboard."""
