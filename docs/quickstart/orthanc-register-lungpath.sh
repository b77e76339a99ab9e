#!/bin/sh
# Register lungpath as a DICOM modality in Orthanc and check both directions with C-ECHO.
# Run it on a host that reaches Orthanc's REST API and, for step 3, the lungpath command.
# Every value comes from the environment (defaults in brackets):
#   ORTHANC_URL [http://127.0.0.1:8042]  Orthanc's REST API
#   ORTHANC_CURL_OPTIONS []              e.g. "--user admin:secret" or "--cacert ca.pem"
#   ORTHANC_AE [ORTHANC]                 Orthanc's DicomAet
#   ORTHANC_DICOM_HOST [127.0.0.1]       where lungpath reaches Orthanc's DICOM port
#   ORTHANC_DICOM_PORT [4242]
#   LUNGPATH_MODALITY [lungpath]         the node's name in Orthanc's list of modalities
#   LUNGPATH_AE [LUNGPATH]               the node's AE title (setting ae_title)
#   LUNGPATH_HOST [127.0.0.1]            where Orthanc reaches the node
#   LUNGPATH_PORT [11112]                the node's DICOM port (setting port)
#   LUNGPATH [lungpath]                  how to run the lungpath command
set -eu
ORTHANC_URL=${ORTHANC_URL:-http://127.0.0.1:8042}
ORTHANC_AE=${ORTHANC_AE:-ORTHANC}
ORTHANC_DICOM_HOST=${ORTHANC_DICOM_HOST:-127.0.0.1}
ORTHANC_DICOM_PORT=${ORTHANC_DICOM_PORT:-4242}
LUNGPATH_MODALITY=${LUNGPATH_MODALITY:-lungpath}
LUNGPATH_AE=${LUNGPATH_AE:-LUNGPATH}
LUNGPATH_HOST=${LUNGPATH_HOST:-127.0.0.1}
LUNGPATH_PORT=${LUNGPATH_PORT:-11112}
LUNGPATH=${LUNGPATH:-lungpath}
CURL="curl --silent --show-error --fail ${ORTHANC_CURL_OPTIONS:-}"

# 1. lungpath becomes a modality of Orthanc. With "DicomModalitiesInDatabase": true the
#    entry survives a restart; otherwise add the same entry to "DicomModalities" in the
#    configuration file (docs/quickstart.md).
$CURL -X PUT "$ORTHANC_URL/modalities/$LUNGPATH_MODALITY" \
  --data "{\"AET\": \"$LUNGPATH_AE\", \"Host\": \"$LUNGPATH_HOST\", \"Port\": $LUNGPATH_PORT,
           \"AllowEcho\": true, \"AllowStore\": true, \"AllowFind\": false,
           \"AllowMove\": false, \"AllowGet\": false}" >/dev/null
echo "registered $LUNGPATH_MODALITY: $LUNGPATH_AE at $LUNGPATH_HOST:$LUNGPATH_PORT"

# 2. Orthanc -> lungpath: the node answers a C-ECHO (it is running and reachable).
$CURL -X POST "$ORTHANC_URL/modalities/$LUNGPATH_MODALITY/echo" --data '{}' >/dev/null
echo "C-ECHO from Orthanc to $LUNGPATH_AE: success"

# 3. lungpath -> Orthanc: the path results take back (the node's destinations setting).
$LUNGPATH echo "$ORTHANC_DICOM_HOST" "$ORTHANC_DICOM_PORT" "$ORTHANC_AE" --calling-ae "$LUNGPATH_AE"
