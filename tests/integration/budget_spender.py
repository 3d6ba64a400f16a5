"""One spending process of the multi-process budget test.

Run as ``python -m tests.integration.budget_spender <database-url> <spool-dir> <mode> <limit>
<refresh_s> <go-file>``. Waits for the go file, then runs a decorated executor (100 tokens, a
few ms each) as user ``u-1`` until its budget has refused every run for one second; prints
what it saw as JSON.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import instrument
from instrument import Budget, BudgetExceeded, logged_execution

RUN_TOKENS = 100
RUN_SECONDS = 0.01


def main() -> None:
    url, spool, mode, limit, refresh_s, go = sys.argv[1:7]
    instrument.configure(database_url=url, spool_dir=spool, traces="none")

    @logged_execution(agent_id=instrument.literal("spender"), user_id="user",
                      budget=Budget(limit_tokens=int(limit), mode=mode,  # type: ignore[arg-type]
                                    refresh_s=float(refresh_s)))
    def run(user: str) -> dict[str, Any]:
        time.sleep(RUN_SECONDS)
        return {"success": True, "tokens": {"input_tokens": 60, "output_tokens": 40}}

    while not Path(go).exists():
        time.sleep(0.005)
    start = time.monotonic()
    runs = refused = ran_after_refusal = 0
    first_refusal: float | None = None
    last_run = start
    deadline = start + 60
    while time.monotonic() < deadline:
        try:
            run("u-1")
        except BudgetExceeded:
            refused += 1
            if first_refusal is None:
                first_refusal = time.monotonic()
            elif time.monotonic() - max(first_refusal, last_run) > 1.0:
                break
            time.sleep(0.01)
            continue
        runs += 1
        last_run = time.monotonic()
        if first_refusal is not None:
            ran_after_refusal += 1
    active = (first_refusal or time.monotonic()) - start
    ok = instrument.flush(30)
    print(json.dumps({"runs": runs, "refused": refused, "ran_after_refusal": ran_after_refusal,
                      "active_s": active, "rate": runs / active if active else 0.0,
                      "flushed": ok}))


if __name__ == "__main__":
    main()
