"""Which webhook URLs may be written down (in a spec, on a command line) and how any URL is shown in logs.

A webhook URL is usually its own credential: Slack, Discord, Teams and Zapier put the token in the path, others
in the query string or as user:password. A spec is a document people review and commit, and a command line ends
up in shell history and `ps`, so both may only name such a URL through an environment variable.
"""

from __future__ import annotations

from urllib.parse import urlsplit

SCHEMES = ("http", "https")

# (host, or a suffix of it starting with ".", path prefix): services whose webhook path is the secret.
SECRET_PATHS: tuple[tuple[str, str], ...] = (
    ("hooks.slack.com", "/services/"),
    ("hooks.slack.com", "/workflows/"),
    ("hooks.slack.com", "/triggers/"),
    ("discord.com", "/api/webhooks/"),
    ("discordapp.com", "/api/webhooks/"),
    (".webhook.office.com", "/"),
    ("outlook.office.com", "/webhook"),
    ("hooks.zapier.com", "/hooks/"),
    ("maker.ifttt.com", "/trigger/"),
    ("api.telegram.org", "/bot"),
)


def _host_matches(host: str, pattern: str) -> bool:
    return host.endswith(pattern) if pattern.startswith(".") else host == pattern


def secret_path(host: str, path: str) -> bool:
    return any(_host_matches(host, h) and path.startswith(p) for h, p in SECRET_PATHS)


def url_problem(url: str) -> str | None:
    """Why `url` cannot be used as a webhook at all (scheme, host), or None."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if parts.scheme.lower() not in SCHEMES:
        return f"uses {parts.scheme or 'no'} scheme; only http and https webhooks are supported"
    if not parts.hostname:
        return "has no host"
    return None


def literal_problem(url: str) -> str | None:
    """Why `url` may not be written literally (it is unusable, or it carries a secret), or None."""
    unusable = url_problem(url)
    if unusable is not None:
        return unusable
    parts = urlsplit(url.strip())
    if parts.username is not None or parts.password is not None:
        return "carries a user name or password (user:password@)"
    if parts.query:
        return "carries a query string (where webhook tokens travel)"
    if secret_path((parts.hostname or "").lower(), parts.path):
        return f"is a {parts.hostname} webhook, whose path is its secret token"
    return None


def redact(url: str) -> str:
    """`url` as logs and notifications.jsonl may show it: scheme, host and port only, the rest (path, query,
    user:password, where any secret would be) replaced by "…"."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        return "(an invalid URL)"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    hidden = parts.path not in ("", "/") or parts.query or parts.username is not None
    return f"{parts.scheme}://{host}{port}/" + ("…" if hidden else "")
