#!/bin/sh
# Send one study from Orthanc to lungpath and wait until lungpath's SR is in the study.
# Usage: orthanc-send-to-lungpath.sh ORTHANC_STUDY_ID
# (Orthanc's id of the study: the "ID" field of GET /studies?expand, or the study's page in
# Orthanc Explorer.) Environment as in orthanc-register-lungpath.sh, plus
#   WAIT_SECONDS [300]   how long to wait for the SR before giving up
set -eu
STUDY=${1:?usage: $0 ORTHANC_STUDY_ID}
ORTHANC_URL=${ORTHANC_URL:-http://127.0.0.1:8042}
LUNGPATH_MODALITY=${LUNGPATH_MODALITY:-lungpath}
WAIT_SECONDS=${WAIT_SECONDS:-300}
CURL="curl --silent --show-error --fail ${ORTHANC_CURL_OPTIONS:-}"

# 1. C-STORE of the whole study to lungpath (Orthanc answers once every instance is sent).
$CURL -X POST "$ORTHANC_URL/modalities/$LUNGPATH_MODALITY/store" --data "$STUDY" >/dev/null
echo "sent study $STUDY to $LUNGPATH_MODALITY"

# 2. lungpath analyses the study once no instance arrived for stable_seconds, then sends
#    its SR, summary image (SC) and SEG back into the same study.
modalities() {
  $CURL "$ORTHANC_URL/studies/$STUDY/series" | grep -o '"Modality" *: *"[A-Z]*"' \
    | sed 's/.*"\([A-Z]*\)"$/\1/' | sort | tr '\n' ' '
}
waited=0
until modalities | grep -qw SR; do
  if [ "$waited" -ge "$WAIT_SECONDS" ]; then
    echo "no SR from lungpath after $WAIT_SECONDS s; see 'lungpath audit' (docs/quickstart.md)" >&2
    exit 1
  fi
  sleep 2
  waited=$((waited + 2))
done
echo "series of the study now: $(modalities)"
