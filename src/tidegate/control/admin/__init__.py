"""The admin listener: the service (service.py), its ASGI app and routes (app.py), the operations
behind them (operations.py), their JSON (views.py), the OpenAPI document and the dashboard."""
