"""DICOMweb checks with a real client: PyPI's dicomweb-client against a running server, and
pydicom (to_json_dict) as the reference for DICOM JSON.

Usage: client.py SCENARIO URL FOLDER
  SCENARIO  "read": searches at every level, retrieval of the study, its series and an
            instance, series and instance metadata; every answer compared, tag for tag, with
            the files in FOLDER (the one study the server holds under that folder's UIDs).
            "frames": every frame of every instance in FOLDER, compared with the file's.
            "store": STOW-RS of the files in FOLDER, then QIDO; refused parts and bodies.
Prints one line per check; exits non-zero at the first difference, saying what differed.
"""

import base64
import sys
from pathlib import Path

import pydicom
from dicomweb_client.api import DICOMwebClient


def fail(message):
    print(f"FAILED: {message}")
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


def load(folder):
    datasets = [pydicom.dcmread(p) for p in sorted(Path(folder).rglob("*.dcm"))]
    check(datasets, f"no .dcm files under {folder}")
    return datasets


def value(attributes, keyword):
    """The first value of `keyword` in a DICOM JSON object (keys are GGGGEEEE)."""
    tag = pydicom.datadict.tag_for_keyword(keyword)
    element = attributes.get(f"{tag:08X}", {})
    values = element.get("Value", [])
    return values[0] if values else None


def reference_json(dataset, instance_url):
    """pydicom's DICOM JSON for `dataset`, bulk data referred to as the server refers to it
    (values over 1 KiB by URI under the instance's URL, by tag path)."""

    def uri(element):
        return f"{instance_url}/bulk/{element.tag:08X}"

    # pydicom compares the base64 length with the threshold; the server, the raw length.
    return dataset.to_json_dict(bulk_data_threshold=(1024 * 4 + 2) // 3, bulk_data_element_handler=uri)


def normalized(attributes):
    """DICOM JSON with what the standard leaves open made the same: an empty Value list is
    no Value (PS3.18 F.2.5), empty strings in a multi-valued text are null, and binary values
    are compared decoded."""
    out = {}
    for key, element in attributes.items():
        element = dict(element)
        if "Value" in element:
            values = element["Value"]
            if not values:
                del element["Value"]
            elif element["vr"] == "SQ":
                element["Value"] = [normalized(item) for item in values]
            else:
                element["Value"] = [None if v == "" else v for v in values]
                if all(v is None for v in element["Value"]):
                    del element["Value"]
        if "InlineBinary" in element:
            element["InlineBinary"] = base64.b64decode(element["InlineBinary"])
        out[key] = element
    return out


def compare_metadata(got, dataset, instance_url):
    want = normalized(reference_json(dataset, instance_url))
    got = normalized(got)
    # The root pixel data: not read at ingest, always by reference under the instance.
    pixel = got.pop("7FE00010", None)
    want.pop("7FE00010", None)
    if "PixelData" in dataset:
        check(pixel is not None, "no pixel data in the metadata")
        check(
            pixel.get("BulkDataURI") == f"{instance_url}/bulk/7FE00010",
            f"pixel data URI {pixel}",
        )
    # Group lengths and the file meta group are not data set attributes in DICOM JSON.
    want = {k: v for k, v in want.items() if not k.endswith("0000") and not k.startswith("0002")}
    for key in sorted(set(want) | set(got)):
        check(key in got, f"{key} missing from the metadata: want {want.get(key)}")
        check(key in want, f"{key} in the metadata but not in the file: {got.get(key)}")
        check(
            got[key] == want[key],
            f"{key} differs: got {got[key]!r}, pydicom says {want[key]!r}",
        )


def read(url, folder):
    datasets = load(folder)
    study = str(datasets[0].StudyInstanceUID)
    client = DICOMwebClient(url=url)

    studies = client.search_for_studies(search_filters={"StudyInstanceUID": study})
    check(len(studies) == 1, f"search for the study found {len(studies)}")
    found = studies[0]
    check(value(found, "StudyInstanceUID") == study, "the study's UID")
    check(
        value(found, "PatientID") == str(datasets[0].PatientID),
        "PatientID at study level",
    )
    check(
        value(found, "NumberOfStudyRelatedInstances") == len(datasets),
        f"NumberOfStudyRelatedInstances {value(found, 'NumberOfStudyRelatedInstances')}",
    )
    check(
        found["00081190"]["Value"][0] == f"{url}/studies/{study}",
        "RetrieveURL of the study",
    )
    name = str(datasets[0].PatientName)
    if name:
        by_name = client.search_for_studies(
            search_filters={"PatientName": name[:2].lower() + "*"}, fuzzymatching=True
        )
        check(
            any(value(s, "StudyInstanceUID") == study for s in by_name),
            "a wildcard on the name, in another case, finds the study",
        )
    print(f"ok: search for studies ({len(studies)})")

    series_uids = sorted({str(d.SeriesInstanceUID) for d in datasets})
    series = client.search_for_series(study_instance_uid=study)
    check(
        sorted(value(s, "SeriesInstanceUID") for s in series) == series_uids,
        "the study's series",
    )
    everywhere = client.search_for_series(search_filters={"SeriesInstanceUID": series_uids[0]})
    check(len(everywhere) == 1, "search for series at the root")
    check(
        value(everywhere[0], "StudyInstanceUID") == study,
        "series found at the root carry their study's UID",
    )
    print(f"ok: search for series ({len(series)})")

    in_series = [d for d in datasets if str(d.SeriesInstanceUID) == series_uids[0]]
    instances = client.search_for_instances(
        study_instance_uid=study, series_instance_uid=series_uids[0], fields=["all"]
    )
    check(len(instances) == len(in_series), "the series' instances")
    first = instances[0]
    sop = value(first, "SOPInstanceUID")
    dataset = next(d for d in in_series if str(d.SOPInstanceUID) == sop)
    if "Rows" in dataset:
        check(value(first, "Rows") == dataset.Rows, "Rows at instance level")
    check(
        len(client.search_for_instances(search_filters={"SOPInstanceUID": sop})) == 1,
        "search for an instance at the root by its UID",
    )
    limited = client.search_for_instances(study_instance_uid=study, limit=2, offset=1)
    check(len(limited) == min(2, len(datasets) - 1), "limit and offset")
    check(
        client.search_for_studies(search_filters={"StudyInstanceUID": "1.2.3.4.5.6.7"}) == [],
        "a search that matches nothing",
    )
    print(f"ok: search for instances ({len(instances)})")

    by_uid = {str(d.SOPInstanceUID): d for d in datasets}
    as_stored = (("application/dicom", "*"),)
    explicit = all(d.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1" for d in datasets)
    # Without a transfer syntax the client gets Explicit VR Little Endian (PS3.18 8.7.3), which
    # for these files is how they are stored.
    for media_types in [as_stored, None] if explicit else [as_stored]:
        retrieved = client.retrieve_study(study, media_types=media_types)
        check(len(retrieved) == len(datasets), f"retrieved {len(retrieved)} instances")
        for got in retrieved:
            want = by_uid[str(got.SOPInstanceUID)]
            check(got == want, f"instance {got.SOPInstanceUID} differs from its file")
            check(
                got.file_meta.TransferSyntaxUID == want.file_meta.TransferSyntaxUID,
                "the transfer syntax as stored",
            )
    retrieved = client.retrieve_series(study, series_uids[0], media_types=as_stored)
    check(len(retrieved) == len(in_series), "retrieve a series")
    one = client.retrieve_instance(study, series_uids[0], sop, media_types=as_stored)
    check(one == dataset, "retrieve an instance")
    print(f"ok: retrieve ({len(datasets)} instances)")

    metadata = client.retrieve_series_metadata(study, series_uids[0])
    check(len(metadata) == len(in_series), "series metadata")
    for attributes in metadata:
        uid = value(attributes, "SOPInstanceUID")
        instance_url = f"{url}/studies/{study}/series/{series_uids[0]}/instances/{uid}"
        compare_metadata(attributes, by_uid[uid], instance_url)
    one = client.retrieve_instance_metadata(study, series_uids[0], sop)
    compare_metadata(one, dataset, f"{url}/studies/{study}/series/{series_uids[0]}/instances/{sop}")
    print(f"ok: metadata ({len(metadata)} instances, tag for tag)")

    # Every root value given by URI, fetched back: the file's bytes (pixel data included).
    fetched = 0
    for attributes in metadata:
        dataset = by_uid[value(attributes, "SOPInstanceUID")]
        for key, element in attributes.items():
            uri = element.get("BulkDataURI")
            if uri is None or dataset.file_meta.TransferSyntaxUID.is_compressed:
                continue
            got = client.retrieve_bulkdata(uri)
            want = dataset[int(key, 16)].value
            check(got == [want], f"bulk data {key}: {len(got[0]) if got else 0} bytes for {len(want)}")
            fetched += 1
    print(f"ok: bulk data ({fetched} values)")


def frames(url, folder):
    """Every frame of every instance in FOLDER, as stored: native samples, or an encapsulated
    frame's fragments joined, compared with pydicom's reading of the file."""
    client = DICOMwebClient(url=url)
    count = 0
    for dataset in load(folder):
        n = int(dataset.get("NumberOfFrames", 1))
        numbers = list(range(1, n + 1))
        got = client.retrieve_instance_frames(
            str(dataset.StudyInstanceUID),
            str(dataset.SeriesInstanceUID),
            str(dataset.SOPInstanceUID),
            frame_numbers=numbers,
            media_types=(("application/octet-stream", "*"),),
        )
        check(len(got) == n, f"{len(got)} frames for {n}")
        if dataset.file_meta.TransferSyntaxUID.is_compressed:
            want = list(pydicom.encaps.generate_frames(dataset.PixelData, number_of_frames=n))
        else:
            size = len(dataset.PixelData) // n
            want = [dataset.PixelData[i * size : (i + 1) * size] for i in range(n)]
        for number, (g, w) in enumerate(zip(got, want), start=1):
            check(g == w, f"frame {number} of {dataset.SOPInstanceUID}: {len(g)} bytes for {len(w)}")
        # Frames asked for out of order come in that order.
        if n > 1:
            two = client.retrieve_instance_frames(
                str(dataset.StudyInstanceUID),
                str(dataset.SeriesInstanceUID),
                str(dataset.SOPInstanceUID),
                frame_numbers=[n, 1],
                media_types=(("application/octet-stream", "*"),),
            )
            check(two == [want[n - 1], want[0]], "frames in the order asked")
        count += n
    print(f"ok: frames ({count}, as stored)")


def store(url, folder):
    """STOW-RS of the files in FOLDER (a study the server does not hold yet): every instance
    stored and found by QIDO; a body with a truncated part stores the rest and names the
    truncated one in FailedSOPSequence (202); an instance of another study posted to a
    study's URL is refused (409)."""
    import requests

    datasets = load(folder)
    study = str(datasets[0].StudyInstanceUID)
    client = DICOMwebClient(url=url)
    check(client.search_for_studies(search_filters={"StudyInstanceUID": study}) == [],
          "the study is not there before")
    answer = client.store_instances(datasets)
    stored = answer.get("ReferencedSOPSequence", [])
    check(len(stored) == len(datasets), f"{len(stored)} instances stored of {len(datasets)}")
    check("FailedSOPSequence" not in answer, "nothing failed")
    for item in stored:
        uid = str(item.ReferencedSOPInstanceUID)
        want = next(d for d in datasets if str(d.SOPInstanceUID) == uid)
        check(item.ReferencedSOPClassUID == want.SOPClassUID, "ReferencedSOPClassUID")
        check(
            item.RetrieveURL
            == f"{url}/studies/{study}/series/{want.SeriesInstanceUID}/instances/{uid}",
            f"RetrieveURL {item.RetrieveURL}",
        )
    found = client.search_for_studies(search_filters={"StudyInstanceUID": study})
    check(len(found) == 1, "QIDO finds the stored study")
    check(value(found[0], "NumberOfStudyRelatedInstances") == len(datasets), "all its instances")
    print(f"ok: store ({len(datasets)} instances), then found")

    # A body of two parts, the second cut short.
    files = sorted(Path(folder).rglob("*.dcm"))
    whole = files[0].read_bytes()
    cut = files[-1].read_bytes()
    cut = cut[: len(cut) * 2 // 3]
    boundary = "stow-test-boundary"
    body = b""
    for part in [whole, cut]:
        body += f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + part + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    headers = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
               "Accept": "application/dicom+json"}
    response = requests.post(f"{url}/studies", data=body, headers=headers)
    check(response.status_code == 202, f"a body with a bad part: {response.status_code} {response.text}")
    answer = response.json()
    failed = answer["00081198"]["Value"]
    check(len(failed) == 1, "one failed part")
    cut_uid = str(pydicom.dcmread(files[-1]).SOPInstanceUID)
    check(value(failed[0], "ReferencedSOPInstanceUID") == cut_uid, "the failed part is named")
    check(value(failed[0], "FailureReason") == 0xC000, f"reason {value(failed[0], 'FailureReason')}")
    check(len(answer["00081199"]["Value"]) == 1, "the good part is stored")
    check("warning" in {k.lower() for k in response.headers}, "a Warning says why")
    print("ok: a truncated part is refused, the rest stored (202)")

    # Posted to another study's URL: refused, nothing stored.
    other = "1.2.826.0.1.3680043.10.1146.77"
    response = requests.post(f"{url}/studies/{other}", data=body.replace(cut, b"").replace(
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n\r\n".encode(), b""), headers=headers)
    check(response.status_code == 409, f"another study's instance: {response.status_code}")
    failed = response.json()["00081198"]["Value"]
    check(value(failed[0], "FailureReason") == 0xA900, "reason: does not match")
    check(client.search_for_studies(search_filters={"StudyInstanceUID": other}) == [],
          "nothing stored under the other study")
    response = requests.post(f"{url}/studies", data=b"x", headers={"Content-Type": "application/json"})
    check(response.status_code == 415, f"not multipart: {response.status_code}")
    print("ok: refusals (409, 415)")


if __name__ == "__main__":
    scenario, url, folder = sys.argv[1:4]
    {"read": read, "frames": frames, "store": store}[scenario](url, folder)
    print("all checks passed")
