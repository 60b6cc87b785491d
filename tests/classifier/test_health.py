from http import HTTPStatus

import torch


def test_liveness(client):
    response = client.get("/healthz")
    assert response.status_code == HTTPStatus.OK
    assert response.json() == {"status": "ok"}


def test_probes_answer_head_requests(client):
    assert client.head("/healthz").status_code == HTTPStatus.OK
    assert client.head("/readyz").status_code == HTTPStatus.OK


def test_readiness_when_the_model_loads(client):
    assert client.get("/readyz").status_code == HTTPStatus.OK


def test_not_ready_without_a_model(client, settings, tmp_path):
    settings.DERMAI_CHECKPOINT = tmp_path / "missing.pt"
    response = client.get("/readyz")
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE


def test_not_ready_with_a_damaged_model(client, settings, tmp_path):
    settings.DERMAI_CHECKPOINT = tmp_path / "damaged.pt"
    torch.save({"format_version": 1, "arch": "SimpleBNConv"}, settings.DERMAI_CHECKPOINT)
    assert client.get("/readyz").status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert client.get("/about/").status_code == HTTPStatus.OK
