"""The Office.js add-in's manifest and the local CA's trust: ``lithotse excel addin-manifest`` and
``lithotse excel trust-cert``.

The add-in itself (custom functions ``LITHOTSE.VALUE`` / ``LITHOTSE.TABLE`` and a task pane) is
static files that ``lithotse serve --https`` hosts at ``https://localhost:PORT/addin/``; its
source is ``addin/`` at the repository's root. The manifest is the add-in-only XML format, the
one that Excel on Windows, Mac, the web and iPad all accept (the unified JSON manifest does not
support custom functions). It uses a shared runtime, so the functions and the task pane run in
one page: they share the token and one change-notification stream.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import quoteattr

from .. import __version__
from ..serve.links import addin_base, addin_origin

NAMESPACE = "LITHOTSE"
# Fixed so that every manifest for the same port is the same add-in to Office (sideloading it
# again replaces it); another port is another add-in, so two workspaces can be installed side by side.
ID_NAMESPACE = uuid.UUID("5b0e7f0e-8f0c-4b8e-9a55-6c1d3e0f4a21")
ICON_SIZES = (16, 32, 64, 80)
DESCRIPTION = ("Live aggregates from the Lithotse service on this computer: LITHOTSE.VALUE and "
               "LITHOTSE.TABLE in cells, and a task pane to insert them.")
GET_STARTED = ("Open the Lithotse pane on the Data tab, paste your token (lithotse token) and insert "
               "live aggregates.")
TOOLTIP = ("Pick a derivative and a date range, insert LITHOTSE.VALUE or LITHOTSE.TABLE, refresh "
           "bound tables.")
OVERRIDES = 'xmlns="http://schemas.microsoft.com/office/taskpaneappversionoverrides" xsi:type="VersionOverridesV1_0"'


def addin_id(port: int) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, f"lithotse-excel-addin:{port}"))


def manifest_version() -> str:
    """Office wants four numeric parts."""
    parts = [p for p in __version__.split(".") if p.isdigit()][:4]
    return ".".join(parts + ["0"] * (4 - len(parts)))


def manifest_xml(port: int) -> str:
    """The add-in-only manifest pointing at ``https://localhost:PORT/addin/``."""
    base = addin_base(port)

    def url(path: str) -> str:
        return quoteattr(f"{base}/{path}")

    icons = "\n".join(f'        <bt:Image id="Icon.{n}" DefaultValue={url(f"assets/icon-{n}.png")}/>'
                      for n in ICON_SIZES)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- Lithotse Excel add-in for https://localhost:{port} (lithotse excel addin-manifest) -->
<OfficeApp xmlns="http://schemas.microsoft.com/office/appforoffice/1.1"
           xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
           xmlns:bt="http://schemas.microsoft.com/office/officeappbasictypes/1.0"
           xmlns:ov="http://schemas.microsoft.com/office/taskpaneappversionoverrides"
           xsi:type="TaskPaneApp">
  <Id>{addin_id(port)}</Id>
  <Version>{manifest_version()}</Version>
  <ProviderName>Lithotse</ProviderName>
  <DefaultLocale>en-US</DefaultLocale>
  <DisplayName DefaultValue="Lithotse"/>
  <Description DefaultValue={quoteattr(DESCRIPTION)}/>
  <IconUrl DefaultValue={url("assets/icon-32.png")}/>
  <HighResolutionIconUrl DefaultValue={url("assets/icon-64.png")}/>
  <SupportUrl DefaultValue={url("help.html")}/>
  <AppDomains>
    <AppDomain>{addin_origin(port)}</AppDomain>
  </AppDomains>
  <Hosts>
    <Host Name="Workbook"/>
  </Hosts>
  <DefaultSettings>
    <SourceLocation DefaultValue={url("taskpane.html")}/>
  </DefaultSettings>
  <Permissions>ReadWriteDocument</Permissions>
  <VersionOverrides {OVERRIDES}>
    <Requirements>
      <bt:Sets DefaultMinVersion="1.1">
        <bt:Set Name="SharedRuntime" MinVersion="1.1"/>
      </bt:Sets>
    </Requirements>
    <Hosts>
      <Host xsi:type="Workbook">
        <Runtimes>
          <Runtime resid="Taskpane.Url" lifetime="long"/>
        </Runtimes>
        <AllFormFactors>
          <ExtensionPoint xsi:type="CustomFunctions">
            <Script>
              <SourceLocation resid="Functions.Script.Url"/>
            </Script>
            <Page>
              <SourceLocation resid="Taskpane.Url"/>
            </Page>
            <Metadata>
              <SourceLocation resid="Functions.Metadata.Url"/>
            </Metadata>
            <Namespace resid="Functions.Namespace"/>
          </ExtensionPoint>
        </AllFormFactors>
        <DesktopFormFactor>
          <GetStarted>
            <Title resid="GetStarted.Title"/>
            <Description resid="GetStarted.Description"/>
            <LearnMoreUrl resid="GetStarted.LearnMoreUrl"/>
          </GetStarted>
          <FunctionFile resid="Taskpane.Url"/>
          <ExtensionPoint xsi:type="PrimaryCommandSurface">
            <OfficeTab id="TabData">
              <Group id="Lithotse.Group">
                <Label resid="Group.Label"/>
                <Icon>
                  <bt:Image size="16" resid="Icon.16"/>
                  <bt:Image size="32" resid="Icon.32"/>
                  <bt:Image size="80" resid="Icon.80"/>
                </Icon>
                <Control xsi:type="Button" id="Lithotse.ShowTaskpane">
                  <Label resid="Button.Label"/>
                  <Supertip>
                    <Title resid="Button.Label"/>
                    <Description resid="Button.Tooltip"/>
                  </Supertip>
                  <Icon>
                    <bt:Image size="16" resid="Icon.16"/>
                    <bt:Image size="32" resid="Icon.32"/>
                    <bt:Image size="80" resid="Icon.80"/>
                  </Icon>
                  <Action xsi:type="ShowTaskpane">
                    <TaskpaneId>Lithotse.Taskpane</TaskpaneId>
                    <SourceLocation resid="Taskpane.Url"/>
                  </Action>
                </Control>
              </Group>
            </OfficeTab>
          </ExtensionPoint>
        </DesktopFormFactor>
      </Host>
    </Hosts>
    <Resources>
      <bt:Images>
{icons}
      </bt:Images>
      <bt:Urls>
        <bt:Url id="Functions.Script.Url" DefaultValue={url("functions.js")}/>
        <bt:Url id="Functions.Metadata.Url" DefaultValue={url("functions.json")}/>
        <bt:Url id="Taskpane.Url" DefaultValue={url("taskpane.html")}/>
        <bt:Url id="GetStarted.LearnMoreUrl" DefaultValue={url("help.html")}/>
      </bt:Urls>
      <bt:ShortStrings>
        <bt:String id="Functions.Namespace" DefaultValue="{NAMESPACE}"/>
        <bt:String id="GetStarted.Title" DefaultValue="Lithotse is ready"/>
        <bt:String id="Group.Label" DefaultValue="Lithotse"/>
        <bt:String id="Button.Label" DefaultValue="Lithotse"/>
      </bt:ShortStrings>
      <bt:LongStrings>
        <bt:String id="GetStarted.Description" DefaultValue={quoteattr(GET_STARTED)}/>
        <bt:String id="Button.Tooltip" DefaultValue={quoteattr(TOOLTIP)}/>
      </bt:LongStrings>
    </Resources>
  </VersionOverrides>
</OfficeApp>
"""


# --- trust-cert --------------------------------------------------------------------------
@dataclass
class TrustReport:
    ca_cert: Path
    name: str
    fingerprint: str
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    steps: dict[str, list[str]] = field(default_factory=dict)

    def text(self) -> str:
        lines = [f"Lithotse local CA: {self.ca_cert}", f"  name: {self.name}",
                 f"  SHA-256 fingerprint: {self.fingerprint}",
                 "  (it can only certify localhost, 127.0.0.1 and ::1; its key stays in "
                 f"{self.ca_cert.parent}, readable by you alone)"]
        lines += [f"done: {d}" for d in self.done]
        lines += [f"failed: {f}" for f in self.failed]
        for where, steps in self.steps.items():
            lines.append(f"{where}:")
            lines += [f"  {i}. {s}" for i, s in enumerate(steps, 1)]
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"ca_cert": str(self.ca_cert), "name": self.name, "fingerprint": self.fingerprint,
                "done": self.done, "failed": self.failed, "steps": self.steps}


def windows_steps(ca: Path) -> list[str]:
    return [f'certutil -user -addstore Root "{ca}"   (in a Command Prompt; confirm the security warning with Yes)',
            "Restart Excel (and Edge or Chrome for Excel on the web)."]


def macos_steps(ca: Path) -> list[str]:
    return [f'security add-trusted-cert -r trustRoot -k ~/Library/Keychains/login.keychain-db "{ca}"   '
            "(in Terminal; macOS asks for your password)",
            "Restart Excel (and Safari or Chrome for Excel on the web). Firefox keeps its own list: "
            "Settings > Privacy & Security > Certificates > View Certificates > Authorities > Import."]


def linux_steps(ca: Path) -> list[str]:
    return [f'certutil -d sql:$HOME/.pki/nssdb -A -t "C,," -n "Lithotse local CA" -i "{ca}"   '
            "(Chromium and Chrome; certutil is in libnss3-tools; create the database first with "
            "certutil -d sql:$HOME/.pki/nssdb -N --empty-password if it does not exist)",
            'Firefox: the same certutil command with -d sql:<profile folder> for each profile in ~/.mozilla/firefox, '
            "or Settings > Privacy & Security > Certificates > View Certificates > Authorities > Import.",
            f"System-wide (needs root): sudo cp \"{ca}\" /usr/local/share/ca-certificates/lithotse-ca.crt "
            "&& sudo update-ca-certificates"]


def all_steps(ca: Path) -> dict[str, list[str]]:
    return {"Windows": windows_steps(ca), "macOS": macos_steps(ca), "Linux browsers": linux_steps(ca)}


def _run(args: list[str]) -> tuple[bool, str]:
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    output = (proc.stderr or proc.stdout).strip().splitlines()
    return proc.returncode == 0, output[-1] if output else f"exit code {proc.returncode}"


def nss_databases(home: Path) -> list[Path]:
    """The NSS certificate databases of this user's browsers: Chromium/Chrome's shared one, and
    each Firefox profile that has one."""
    found = [home / ".pki" / "nssdb"]
    for root in (home / ".mozilla" / "firefox", home / "snap" / "firefox" / "common" / ".mozilla" / "firefox"):
        if root.is_dir():
            found += sorted(p for p in root.iterdir() if (p / "cert9.db").exists())
    return found


def _trust_linux(report: TrustReport, home: Path) -> None:
    certutil = shutil.which("certutil")
    if certutil is None:
        report.failed.append("certutil is not installed (Debian/Ubuntu: apt-get install libnss3-tools); "
                             "install it and run lithotse excel trust-cert again, or follow the steps below")
        return
    for db in nss_databases(home):
        if not (db / "cert9.db").exists():
            db.mkdir(parents=True, exist_ok=True)
            ok, message = _run([certutil, "-d", f"sql:{db}", "-N", "--empty-password"])
            if not ok:
                report.failed.append(f"could not create the NSS database {db}: {message}")
                continue
        ok, message = _run([certutil, "-d", f"sql:{db}", "-A", "-t", "C,,", "-n", report.name,
                            "-i", str(report.ca_cert)])
        if ok:
            report.done.append(f"trusted for websites in the NSS database {db}")
        else:
            report.failed.append(f"certutil could not add the CA to {db}: {message}")


def trust_ca(port: int, *, install: bool = True, platform: str = sys.platform,
             home: Path | None = None) -> TrustReport:
    """Make sure the CA exists, then have this user's OS (or browsers) trust it where possible;
    the report says what was done and the exact steps for everything else."""
    from ..serve.tls import ca_common_name, ca_fingerprint, ensure_certificates

    certs = ensure_certificates()
    ca = certs.ca_cert
    report = TrustReport(ca, ca_common_name(ca), ca_fingerprint(ca))
    home = Path(home or os.path.expanduser("~"))
    if install:
        if platform.startswith("win"):
            ok, message = _run(["certutil", "-user", "-addstore", "Root", str(ca)])
            (report.done if ok else report.failed).append(
                "added to your Trusted Root Certification Authorities" if ok else f"certutil: {message}")
        elif platform == "darwin":
            keychain = home / "Library" / "Keychains" / "login.keychain-db"
            ok, message = _run(["security", "add-trusted-cert", "-r", "trustRoot", "-k", str(keychain), str(ca)])
            (report.done if ok else report.failed).append(
                f"trusted in your login keychain {keychain}" if ok else f"security add-trusted-cert: {message}")
        else:
            _trust_linux(report, home)
    if install and report.done and not report.failed:
        report.steps = {"next": ["Restart Excel, and the browser you use Excel on the web in, so they read "
                                 f"the new trust; then open {addin_base(port)}/ once to check "
                                 "(no certificate warning)."]}
    else:
        report.steps = all_steps(ca)
    return report
