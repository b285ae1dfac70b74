"""The OpenAI API's chat completions, completions, embeddings and models endpoints: thin
routes over `gateway.proxy.Proxy` (beside `gateway.responses`, the Responses API)."""
