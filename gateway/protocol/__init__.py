"""Wire types of the API surfaces the gateway serves, one module per surface (pydantic v2):
`openai.py` for chat completions, completions, embeddings and models; `responses.py` for
the Responses API. Routers, the OpenAPI tables (`gateway.app`) and the upstream parameter
filter (`gateway.upstream.params`) import them from here."""
