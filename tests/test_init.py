"""`pipeline init EXPORT`: a commented config that validates as written; never overwrites unasked."""
from __future__ import annotations

import pytest
import yaml

from pipeline.cli import main
from store_exports import (SHOPIFY_CURRENT, _write_csv, read_csv, write_merchant_xml, write_shopify,
                           write_woocommerce)

BASE = "https://cdn.example.com/files"


@pytest.mark.parametrize("name, write", [
    ("products_export.csv", lambda p: write_shopify(p, BASE)),
    ("products_export.csv", lambda p: write_shopify(p, BASE, "older")),
    ("wc-product-export.csv", lambda p: write_woocommerce(p, BASE)),
    ("feed.xml", lambda p: write_merchant_xml(p, BASE)),
])
def test_init_writes_a_config_that_validates_unedited(tmp_path, capsys, monkeypatch, name, write):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "shop").mkdir()
    write(tmp_path / "shop" / name)
    assert main(["init", f"shop/{name}"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"shop/{name}: ") and " · 4 products · " in out[0] and out[0].endswith(
        " · 1 without a picture")
    assert out[-1] == "wrote shop/catalog.yaml; check it with `pipeline validate shop/catalog.yaml`"
    text = (tmp_path / "shop" / "catalog.yaml").read_text()
    doc = yaml.safe_load(text)
    assert doc["manifest"] == name and "{title}" in doc["prompt"]
    assert "# public_url:" in text and "public_url" not in doc["output"]
    assert doc["budget"]["max_credits"] > 0
    assert main(["validate", "shop/catalog.yaml"]) == 0
    assert capsys.readouterr().err == ""


def test_init_uses_only_fields_every_product_fills(tmp_path, capsys):
    write_woocommerce(tmp_path / "wc.csv", BASE)  # every product with a picture has Categories; none has a brand
    assert main(["init", str(tmp_path / "wc.csv")]) == 0
    prompt = yaml.safe_load((tmp_path / "catalog.yaml").read_text())["prompt"]
    assert prompt.startswith("{title}, {product_type}, ")  # no {brand}: no product has one
    write_shopify(tmp_path / "s.csv", BASE)
    assert main(["init", str(tmp_path / "s.csv"), "--output", str(tmp_path / "s.yaml")]) == 0
    assert yaml.safe_load((tmp_path / "s.yaml").read_text())["prompt"].startswith("{title}, {product_type} by {brand}, ")


def test_init_refuses_to_overwrite_unless_forced(tmp_path, capsys):
    write_shopify(tmp_path / "e.csv", BASE)
    (tmp_path / "catalog.yaml").write_text("# mine\n")
    assert main(["init", str(tmp_path / "e.csv")]) == 2
    assert "already exists; pass --force to overwrite it" in capsys.readouterr().err
    assert (tmp_path / "catalog.yaml").read_text() == "# mine\n"
    assert main(["init", str(tmp_path / "e.csv"), "--force"]) == 0
    assert yaml.safe_load((tmp_path / "catalog.yaml").read_text())["store"]["format"] == "shopify"


def test_init_warns_about_rows_validate_will_refuse(tmp_path, capsys):
    write_shopify(tmp_path / "e.csv", BASE)
    rows = read_csv(tmp_path / "e.csv")
    _write_csv(tmp_path / "e.csv", SHOPIFY_CURRENT, rows + rows[:1])  # the mug's first row again, after the lamp
    assert main(["init", str(tmp_path / "e.csv")]) == 0
    err = capsys.readouterr().err
    assert "warning: " in err and "row 9: duplicate id 'ceramic-mug': a product with this id begins on row 2" in err
    assert (tmp_path / "catalog.yaml").exists()
    assert main(["validate", str(tmp_path / "catalog.yaml")]) == 2
