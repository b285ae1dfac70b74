"""The OpenAI Responses API (`/v1/responses`): wire types, translation to and from chat
completions, typed event streams, conversation state, and the service behind the routes."""
