import io

import torch
from PIL import Image, ImageDraw

from ml import SHIPPED_CHECKPOINT
from ml.explain import grad_cam, jet, overlay
from ml.predict import Predictor
from ml.preprocessing import normalize


def _lesion_at(x: int, y: int) -> bytes:
    """A skin-coloured photo with one dark, irregular lesion centred at (x, y) of 400×300."""
    image = Image.new("RGB", (400, 300), (214, 160, 140))
    draw = ImageDraw.Draw(image)
    draw.ellipse((x - 45, y - 40, x + 45, y + 40), fill=(120, 70, 55))
    draw.ellipse((x - 20, y - 15, x + 15, y + 20), fill=(60, 35, 30))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _centre_of_mass_x(cam: torch.Tensor) -> float:
    xs = torch.linspace(0, 1, cam.shape[1])
    return float((cam.sum(dim=0) * xs).sum() / cam.sum())


def test_heatmap_has_the_image_size_and_moves_with_the_lesion():
    predictor = Predictor(SHIPPED_CHECKPOINT)
    centres = []
    for x in (90, 310):  # lesion on the left, then on the right
        pixels = predictor.prepare(_lesion_at(x, 150))
        inputs = normalize(pixels, config=predictor.config).unsqueeze(0)
        target = int(predictor.probabilities(pixels.unsqueeze(0)).argmax())
        cam = grad_cam(predictor.model, inputs, target=target)
        assert cam.shape == pixels.shape[1:]
        assert 0 <= float(cam.min()) and float(cam.max()) <= 1
        centres.append(_centre_of_mass_x(cam))
    # The map must respond to where the lesion is. (Which side it favours depends on the class it
    # explains: for these flat synthetic images the shipped model answers VASC from the skin around.)
    assert abs(centres[0] - centres[1]) > 0.05


def test_overlay_keeps_the_image_shape_and_type():
    pixels = torch.full((3, 8, 8), 128, dtype=torch.uint8)
    cam = torch.zeros(8, 8)
    cam[2:4, 2:4] = 1
    blended = overlay(pixels, cam)
    assert blended.shape == pixels.shape and blended.dtype == torch.uint8
    assert not torch.equal(blended[:, 2, 2], blended[:, 6, 6])


def test_jet_runs_from_blue_to_red():
    colours = jet(torch.tensor([[0.0, 0.5, 1.0]]))
    assert colours[:, 0, 0].tolist() == [0.0, 0.0, 0.5]  # dark blue
    assert colours[:, 0, 1].tolist() == [0.5, 1.0, 0.5]  # green-ish middle
    assert colours[:, 0, 2].tolist() == [0.5, 0.0, 0.0]  # dark red
