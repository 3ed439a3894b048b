#!/usr/bin/env bash
# Open a workbook in headless LibreOffice with an isolated profile that recalculates every
# formula on load, and save the result as FORMAT (default xlsx) into OUTDIR.
# Usage: scripts/libreoffice-recalc.sh WORKBOOK OUTDIR [FORMAT]
# Needs: apt-get install -y --no-install-recommends libreoffice-calc-nogui
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 WORKBOOK OUTDIR [FORMAT]" >&2
  exit 2
fi
in=$1 outdir=$2 fmt=${3:-xlsx}
soffice=$(command -v soffice || command -v libreoffice || true)
if [ -z "$soffice" ]; then
  echo "soffice not found; install LibreOffice: apt-get install -y --no-install-recommends libreoffice-calc-nogui" >&2
  exit 127
fi
profile=$(mktemp -d "${TMPDIR:-/tmp}/lithotse-lo-profile.XXXXXX")
trap 'rm -rf "$profile"' EXIT
mkdir -p "$profile/user"
cat > "$profile/user/registrymodifications.xcu" <<'XCU'
<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry" xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<item oor:path="/org.openoffice.Office.Calc/Formula/Load"><prop oor:name="OOXMLRecalcMode" oor:op="fuse"><value>0</value></prop></item>
<item oor:path="/org.openoffice.Office.Calc/Formula/Load"><prop oor:name="ODFRecalcMode" oor:op="fuse"><value>0</value></prop></item>
</oor:items>
XCU
mkdir -p "$outdir"
"$soffice" "-env:UserInstallation=file://$profile" --headless --norestore --nolockcheck \
  --convert-to "$fmt" --outdir "$outdir" "$in" >/dev/null
base=$(basename "${in%.*}")
test -s "$outdir/$base.$fmt" || { echo "LibreOffice wrote no $outdir/$base.$fmt" >&2; exit 1; }
echo "$outdir/$base.$fmt"
