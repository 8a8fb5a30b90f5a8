"""`make demo`: the whole flow on this machine, no account needed.

Starts a real Dovecot (TLS, a throwaway CA) and the Email2SMS gateway
simulator on loopback, writes a config, runs ``forwarder check`` and
``forwarder run`` exactly as a user would, drops a few mails into the
mailbox, and prints each SMS as it reaches the "gateway".
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.servers.dovecot import DovecotServer  # noqa: E402
from tests.support.servers.gateway import GatewaySimulator  # noqa: E402
from tests.support.servers.mails import make_mail  # noqa: E402

USER = "demo@example.com"
OWNER = "380501234567"

CONFIG = """\
# Written by demo/demo.py: a real Dovecot over TLS, the gateway simulator on loopback.
imap:
  host: 127.0.0.1
  port: {imap_port}
  security: tls
  ca_file: {ca_file}
  username: {user}
  password: ${{DEMO_IMAP_PASSWORD}}
  folders: [INBOX]
  idle: true                 # push: SMS about half a second after the mail arrives
  poll_interval: 60          # the safety net
smtp:
  host: 127.0.0.1
  port: {smtp_port}
  security: plain            # allowed only because the host is loopback
  from: {user}
gateway:
  login: "{owner}"
  sender: DemoAlpha
state: {state}
rules:
  - name: bank
    match:
      from: "*@bank.example.ua"
    action: forward
  - name: urgent
    match:
      any:
        - subject: {{contains: urgent}}
        - subject: {{contains: терміново}}
    action: forward
default: skip
"""

MAILS = [
    (
        "newsletter (should be skipped)",
        make_mail(
            "Our autumn sale starts today",
            "Big discounts on everything!",
            from_="Shop <news@shop.example.com>",
        ),
    ),
    (
        "bank alert in Ukrainian, HTML only",
        make_mail(
            "Списання з картки",
            "",
            from_="ПриватБанк <alerts@bank.example.ua>",
            html="<html><head><style>p{color:red}</style></head><body>"
            "<div style='display:none'>preheader you never see</div>"
            "<p>Списання <b>1&nbsp;250,00 грн</b> з картки *1234.</p>"
            "<p>Баланс: 8&nbsp;400,17 грн</p></body></html>",
        ),
    ),
    (
        "urgent reply with quoted history and a signature",
        make_mail(
            "Re: URGENT: server down",
            textwrap.dedent("""\
            It is back up, but the disk is at 97%. Please look today.

            --
            Olena, on-call
            Sent from my iPhone

            On Tue, 24 Nov 2026 at 23:10, Monitoring <alerts@example.com> wrote:
            > db01 is not answering
            > since 23:04
            """),
            from_="Olena Kovalenko <olena@example.com>",
        ),
    ),
]


def forwarder(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "forwarder.cli", *args], env=env, text=True, capture_output=True
    )


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="forwarder-demo-"))
    env = {**os.environ, "DEMO_IMAP_PASSWORD": "secret"}
    with (
        DovecotServer(tls=True, password="secret") as dovecot,
        GatewaySimulator(deliver=lambda raw: dovecot.append(USER, "INBOX", raw)) as gateway,
    ):
        config = workdir / "forwarder.yaml"
        config.write_text(
            CONFIG.format(
                imap_port=dovecot.tls_port,
                ca_file=dovecot.ca_file,
                user=USER,
                smtp_port=gateway.port,
                owner=OWNER,
                state=workdir / "state.db",
            )
        )
        print(
            f"Dovecot (IMAPS) on 127.0.0.1:{dovecot.tls_port}, gateway simulator on "
            f"127.0.0.1:{gateway.port}; config in {config}\n"
        )
        check = forwarder("check", "--config", str(config), env=env)
        print(f"$ forwarder check --config {config.name}\n{check.stdout}{check.stderr}")
        if check.returncode:
            return check.returncode

        with open(workdir / "daemon.log", "w") as log:
            daemon = subprocess.Popen(
                [sys.executable, "-m", "forwarder.cli", "run", "--config", str(config)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + 15
            while "first start" not in (workdir / "daemon.log").read_text():
                if time.monotonic() > deadline or daemon.poll() is not None:
                    print((workdir / "daemon.log").read_text())
                    return 1
                time.sleep(0.1)
            # The gateway will answer the first SMS with an error e-mail into the mailbox,
            # which forwarder must recognise, tie to that SMS, and never forward.
            gateway.reply_with("MSG:305")
            for what, raw in MAILS:
                print(f"→ new mail in INBOX: {what}")
                started = time.monotonic()
                dovecot.append(USER, "INBOX", raw)
                if "skipped" not in what:
                    gateway.wait_for(len(gateway.received) + 1, timeout=30)
                    print(f"  SMS at the gateway {time.monotonic() - started:.2f} s later")
            received = gateway.received
            gateway.wait_for_replies(1)
            print("← the gateway answered the first SMS with an error e-mail (MSG:305)")
            deadline = time.monotonic() + 15
            while "gateway reply MSG:305" not in (workdir / "daemon.log").read_text():
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)
        finally:
            daemon.terminate()
            daemon.wait(30)

        print("\nWhat reached the Email2SMS gateway:")
        for sms in received:
            print(
                f"\n  To:      {sms.to}\n  Subject: {sms.subject}\n  Charset: {sms.charset}"
                f"\n  Text ({len(sms.text)} characters):"
            )
            for line in sms.text.splitlines():
                print(f"    | {line}")
            if sms.problems:
                print(f"  PROBLEMS: {sms.problems}")
        print("\nThe daemon's log:")
        for line in (workdir / "daemon.log").read_text().splitlines():
            print(f"  {line}")
        status = forwarder("status", "--config", str(config), env=env)
        print(f"\n$ forwarder status --config {config.name}\n{status.stdout}{status.stderr}")
        ok = len(received) == 2 and all(not sms.problems for sms in received)
        print("demo OK" if ok else "demo FAILED")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
