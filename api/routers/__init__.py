"""The API's routers, one per resource; each route declares its access policy (api.auth)."""
