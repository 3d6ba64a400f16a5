"""What the install brings (gRPC is an extra) and what the messages tell users to install."""

from __future__ import annotations

import tomllib
from pathlib import Path

from instrument.cli import EXIT_USAGE
from tests.conftest import run_python

ROOT = Path(__file__).resolve().parents[2]
CHECKOUT_HINT = "pip install -e '.[{extra}]'"


def _project() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)["project"]  # type: ignore[no-any-return]


def _names(requirements: object) -> list[str]:
    assert isinstance(requirements, list)
    return [r.split(">", 1)[0].split("=", 1)[0].split("[", 1)[0].split(";", 1)[0].strip()
            for r in requirements]


def test_the_core_install_exports_over_http_and_grpc_is_an_extra() -> None:
    project = _project()
    core = _names(project["dependencies"])
    assert "opentelemetry-exporter-otlp-proto-http" in core
    # the meta-package pulls grpcio (~19 MB); the gRPC exporter is the `grpc` extra
    assert "opentelemetry-exporter-otlp" not in core
    assert "opentelemetry-exporter-otlp-proto-grpc" not in core
    extras = project["optional-dependencies"]
    assert isinstance(extras, dict)
    assert _names(extras["grpc"]) == ["opentelemetry-exporter-otlp-proto-grpc"]
    assert "grpc" in extras["all"][0]  # all = logged-execution[grpc,postgres,...]
    assert "logged-execution[all]" in extras["dev"]


_BLOCK_GRPC = """
import sys
for name in ("grpc", "opentelemetry.exporter.otlp.proto.grpc"):
    sys.modules[name] = None  # as if the `grpc` extra were not installed
"""


def test_exporting_over_http_needs_no_grpc(tmp_path: Path) -> None:
    proc = run_python(_BLOCK_GRPC + f"""
import instrument
instrument.configure(database_url="sqlite:///{tmp_path / 'a.db'}")

@instrument.logged_execution(agent_id="agent_id")
def run(agent_id):
    return {{"success": True}}

run("a")
assert instrument.flush(10)
print(sorted(m for m, mod in sys.modules.items()
             if m.startswith("opentelemetry.exporter.otlp.proto") and mod is not None))
""", env={"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
    assert proc.returncode == 0, proc.stderr
    loaded = proc.stdout.strip()
    assert "opentelemetry.exporter.otlp.proto.http" in loaded
    assert "grpc" not in loaded


def test_the_grpc_protocol_without_the_extra_says_what_to_install(tmp_path: Path) -> None:
    proc = run_python(_BLOCK_GRPC + f"""
import instrument
try:
    instrument.configure(database_url="sqlite:///{tmp_path / 'a.db'}")
except instrument.ConfigurationError as exc:
    print(exc)
""", env={"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
         "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
    assert proc.returncode == 0, proc.stderr
    said = proc.stdout.strip()
    assert said.startswith("OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs the OTLP gRPC exporter")
    assert "pip install 'logged-execution[grpc]'" in said
    assert "pip install -e '.[grpc]'" in said
    assert "http/protobuf" in said


def test_a_missing_store_driver_names_the_install_from_a_checkout() -> None:
    proc = run_python("import sys; sys.modules['psycopg'] = None\n"
                      "from instrument.cli import main\n"
                      "sys.exit(main(['stats', '--database-url', "
                      "'postgresql://app:secret@127.0.0.1:5432/app']))")
    assert proc.returncode == EXIT_USAGE
    line = proc.stderr.strip()
    assert line.startswith("error: the store for postgresql://app:***@127.0.0.1:5432/app needs "
                           "a package that is not installed (psycopg)")
    assert CHECKOUT_HINT.format(extra="postgres") in line
    assert "secret" not in line
