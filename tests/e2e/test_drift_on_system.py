"""Drift on the system as `make up` starts it: register-existing and the training server publish the
versions' drift references (the shipped version's committed one) to Redis, history reads them, and
GET /api/v1/drift answers a new lab's first cell with "too few cells" for the version that served it
(not "no reference"), while a caller of another organization sees none of it."""

from __future__ import annotations


from hemovision_contracts import drift


def test_a_new_labs_drift_knows_its_versions_reference(system, client, test_images, new_lab):
    headers = new_lab()
    _, path = test_images[0]
    created = client.post("/api/v1/predictions", headers=headers,
                          files={"file": ("cell.png", path.read_bytes(), "image/png")})
    assert created.status_code == 201, created.text
    version = created.json()["model"]["version"]

    reply = client.get("/api/v1/drift", headers=headers)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    (item,) = body["items"]
    assert item["model_version"] == version and item["cells"] == 1
    assert item["status"] == drift.TOO_FEW, item  # the reference was found: only the cells are missing
    assert body["min_cells"] == drift.MIN_CELLS

    other = client.get("/api/v1/drift", headers=new_lab())
    assert other.status_code == 200 and other.json()["items"] == []
