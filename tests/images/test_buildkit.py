"""The demo content is serialised exactly as BuildKit does: checked against the reference digests."""

from __future__ import annotations

import json

from app.images import buildkit

PROVENANCE_STATEMENT_DIGEST = "sha256:0fc14d47dd05de39fb4f93c53a860792afd66c24d5e18ee7c318fbef8e553b3e"


def test_legacy_attestation_config_and_manifest_bytes_match_buildkit() -> None:
    config = buildkit.compact(
        {
            "architecture": "unknown",
            "os": "unknown",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [PROVENANCE_STATEMENT_DIGEST]},
        }
    )
    assert len(config) == 167
    assert buildkit.digest_of(config) == "sha256:16d55f0135e046e6d7e071e054e382a9eb2d102f1b7c8c84dac9385ba9468fe1"
    manifest = buildkit.indented(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": buildkit.descriptor("application/vnd.oci.image.config.v1+json", config),
            "layers": [
                {
                    "mediaType": buildkit.IN_TOTO,
                    "digest": PROVENANCE_STATEMENT_DIGEST,
                    "size": 1010,
                    "annotations": {"in-toto.io/predicate-type": buildkit.PROVENANCE_V02},
                }
            ],
        }
    )
    assert len(manifest) == 566
    assert buildkit.digest_of(manifest) == "sha256:8ff650d04f67e706587ea297714c6bf0b096fe7e440b8e95c50dcb6456437c69"


def test_attested_index_layout() -> None:
    content = buildkit.attested_index("r/app:1", ["amd64", "arm64"], [buildkit.PROVENANCE_V02], False)
    index = json.loads(content.root[0])
    platforms = [m["platform"] for m in index["manifests"]]
    assert platforms == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm64", "os": "linux"},
        {"architecture": "unknown", "os": "unknown"},
        {"architecture": "unknown", "os": "unknown"},
    ]
    attestation = index["manifests"][2]
    assert attestation["annotations"] == {
        "vnd.docker.reference.digest": index["manifests"][0]["digest"],
        "vnd.docker.reference.type": "attestation-manifest",
    }
    assert "artifactType" not in attestation  # never on the index descriptor, even in OCI-artifact mode


def test_oci_artifact_attestation_has_subject_and_empty_config() -> None:
    content = buildkit.attested_index("r/app:1", ["amd64"], [buildkit.PROVENANCE_V1], True)
    body, _ = content.manifests[1]
    doc = json.loads(body)
    assert doc["artifactType"] == buildkit.ATTESTATION_ARTIFACT
    assert doc["config"] == {
        "mediaType": "application/vnd.oci.empty.v1+json",
        "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
        "size": 2,
        "data": "e30=",
    }
    assert doc["subject"]["digest"] == buildkit.digest_of(content.manifests[0][0])
    assert list(doc) == ["schemaVersion", "mediaType", "artifactType", "config", "layers", "subject"]


def test_image_config_keys_sorted_and_created_optional() -> None:
    content = buildkit.single_image(created=None)
    manifest = json.loads(content.root[0])
    config = json.loads(content.blobs[manifest["config"]["digest"]])
    assert list(config) == sorted(config)
    assert "created" not in config
