"""Operations options: health probe, CORS, proxies, TLS, logging, shutdown.

Names, groups and defaults are those of the libraries a Glance deployment
configures them with (oslo.middleware's healthcheck, cors and http_proxy_to_wsgi,
Glance's [DEFAULT] TLS options, oslo.log, oslo.service), so an operator's
glance-api.conf keeps its meaning. glimpse.config registers them with the rest.
"""

from __future__ import annotations

from oslo_config import cfg

from glimpse.config import list_opt

healthcheck_opts = [
    cfg.StrOpt("disable_by_file_path",
               help="While this file exists, /healthcheck answers 503 'DISABLED BY FILE' "
               "(take the node out of a load balancer's rotation without stopping it)."),
    cfg.BoolOpt("detailed", default=False,
                help="Whether /healthcheck itself runs every check (database, stores, "
                "broker) and shows the detailed report to anyone. Off: the detailed report "
                "is only at /healthcheck/detailed, for admins."),
]

# Glance's own defaults for the CORS lists (set over oslo.middleware's empty ones).
CORS_ALLOW_HEADERS = ["Content-MD5", "X-Image-Meta-Checksum", "X-Storage-Token",
                      "Accept-Encoding", "X-Auth-Token", "X-Identity-Status", "X-Roles",
                      "X-Service-Catalog", "X-User-Id", "X-Tenant-Id",
                      "X-OpenStack-Request-ID"]
CORS_EXPOSE_HEADERS = ["X-Image-Meta-Checksum", "X-Auth-Token", "X-Subject-Token",
                       "X-Service-Token", "X-OpenStack-Request-ID"]
CORS_ALLOW_METHODS = ["GET", "PUT", "POST", "DELETE", "PATCH"]

cors_opts = [
    list_opt("allowed_origin",
             help="Origins (scheme://host[:port]) whose browser scripts may call the API; "
             "'*' allows any. Unset: no cross-origin request is allowed."),
    cfg.BoolOpt("allow_credentials", default=True,
                help="Whether the answer lets the browser send cookies and HTTP auth."),
    list_opt("expose_headers", default=CORS_EXPOSE_HEADERS,
             help="Response headers a cross-origin script may read."),
    cfg.IntOpt("max_age", default=3600,
               help="Seconds a browser may cache a preflight answer."),
    list_opt("allow_methods", default=CORS_ALLOW_METHODS,
             help="Methods a cross-origin request may use (answered to preflights)."),
    list_opt("allow_headers", default=CORS_ALLOW_HEADERS,
             help="Request headers a cross-origin request may send."),
]

oslo_middleware_opts = [
    cfg.BoolOpt("enable_proxy_headers_parsing", default=False,
                help="Trust the Forwarded, X-Forwarded-Proto and X-Forwarded-Host headers "
                "of a reverse proxy when building absolute links. Only behind a proxy "
                "that sets (or strips) them."),
]

tls_opts = [
    cfg.StrOpt("cert_file", help="PEM certificate (chain) to serve HTTPS with; needs key_file."),
    cfg.StrOpt("key_file", help="PEM private key of cert_file."),
    cfg.StrOpt("ca_file", help="CA certificates (PEM): when set, every client must present "
               "a certificate signed by one of them."),
]

server_opts = [
    cfg.IntOpt("graceful_shutdown_timeout", default=60, min=0,
               help="Seconds a SIGTERM'd worker lets requests in flight finish before it "
               "aborts them (0: wait without limit)."),
    cfg.IntOpt("client_socket_timeout", default=900, min=0,
               help="Seconds a client may take to send a request's headers, and may leave "
               "its body idle (no bytes arriving), before the connection is closed: an "
               "upload or stage is rolled back (408), the image queued again and its "
               "partial data removed (0: wait without limit)."),
]

# oslo.log's names and defaults; %(user_identity)s and %(request_id)s come from the
# request being served ("-" outside a request).
DEFAULT_CONTEXT_FORMAT = ("%(asctime)s.%(msecs)03d %(process)d %(levelname)s %(name)s "
                          "[%(global_request_id)s %(request_id)s %(user_identity)s] "
                          "%(instance)s%(message)s")
DEFAULT_FORMAT = ("%(asctime)s.%(msecs)03d %(process)d %(levelname)s %(name)s [-] "
                  "%(instance)s%(message)s")
DEFAULT_LOG_LEVELS = ["amqp=WARN", "amqplib=WARN", "sqlalchemy=WARN", "alembic=WARN",
                      "oslo_policy=INFO", "urllib3.connectionpool=WARN", "httpx=WARN",
                      "httpcore=WARN", "stevedore=WARN", "uvicorn.access=WARN",
                      "keystoneauth=WARN", "multipart=WARN"]

logging_opts = [
    cfg.BoolOpt("debug", short="d", default=False,
                help="Log at DEBUG level instead of INFO (and show tracebacks of start-up "
                "failures)."),
    cfg.StrOpt("log_config_append", metavar="PATH",
               help="A logging configuration file (Python logging.config fileConfig format) "
               "applied after the defaults; every other logging option is then ignored. "
               "Handlers such as WatchedFileHandler, SysLogHandler or fluentd's come from "
               "here."),
    cfg.StrOpt("log_date_format", default="%Y-%m-%d %H:%M:%S",
               help="strftime format of %(asctime)s."),
    cfg.StrOpt("log_file", metavar="PATH",
               help="Log to this file (relative names are under log_dir). Unset: log to "
               "standard error."),
    cfg.StrOpt("log_dir", help="Directory of log_file."),
    cfg.BoolOpt("watch_log_file", default=False,
                help="Reopen log_file when it is moved or removed (logrotate without "
                "copytruncate)."),
    cfg.BoolOpt("use_syslog", default=False, help="Log to syslog as well (/dev/log)."),
    cfg.StrOpt("syslog_log_facility", default="LOG_USER",
               help="Syslog facility (LOG_USER, LOG_LOCAL0 ... LOG_LOCAL7, LOG_DAEMON)."),
    cfg.BoolOpt("use_json", default=False,
                help="One JSON object per line instead of the format strings."),
    cfg.BoolOpt("use_stderr", default=False,
                help="Log to standard error as well when log_file or syslog is used."),
    cfg.StrOpt("logging_context_format_string", default=DEFAULT_CONTEXT_FORMAT,
               help="Format of lines logged while a request is served."),
    cfg.StrOpt("logging_default_format_string", default=DEFAULT_FORMAT,
               help="Format of lines logged outside a request."),
    cfg.StrOpt("logging_exception_prefix",
               default="%(asctime)s.%(msecs)03d %(process)d ERROR %(name)s %(instance)s",
               help="Prefix of each traceback line."),
    list_opt("default_log_levels", default=DEFAULT_LOG_LEVELS,
             help="logger=LEVEL pairs applied to other libraries' loggers."),
]

metrics_opts = [
    cfg.BoolOpt("enabled", default=False,
                help="(Glimpse) Export Prometheus metrics (glimpse.metrics lists them). Off "
                "by default."),
    cfg.PortOpt("bind_port", default=0,
                help="(Glimpse) 0: serve /metrics on the API port, to admins only. Another "
                "port: serve them there without authentication, on bind_host (keep that "
                "port off public networks)."),
    cfg.StrOpt("bind_host", default="127.0.0.1",
               help="(Glimpse) Address of the separate metrics port."),
]

OPT_GROUPS: list[tuple[str | None, list[cfg.Opt]]] = [
    (None, tls_opts + server_opts + logging_opts),
    ("healthcheck", healthcheck_opts),
    ("cors", cors_opts),
    ("oslo_middleware", oslo_middleware_opts),
    ("metrics", metrics_opts),
]
