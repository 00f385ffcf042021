"""OpenAPI declares the error shape everywhere; /docs and /redoc work offline."""

import re
from urllib.parse import urljoin


async def test_every_operation_declares_the_error_shape(client):
    schema = (await client.get("/openapi.json")).json()
    assert "ErrorBody" in schema["components"]["schemas"]
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    operations = [
        (path, method, op) for path, item in schema["paths"].items() for method, op in item.items()
    ]
    assert len(operations) >= 11
    for path, method, op in operations:
        responses = op["responses"]
        assert "default" in responses, (path, method)
        for status, response in responses.items():
            if status == "default" or status[0] in "45":
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/ErrorBody"), (path, method, status)
    auth_ops = [op for path, _, op in operations if path.startswith("/api/auth/")]
    assert all("422" in op["responses"] and "401" in op["responses"] for op in auth_ops)
    assert set(schema["components"]["schemas"]["ErrorBody"]["properties"]) == {
        "error",
        "code",
        "details",
    }
    assert schema["paths"]["/api/auth/me"]["get"]["summary"] == "The caller's account."


async def _assets(client, page: str) -> list[str]:
    html = (await client.get(page)).text
    urls = re.findall(r'(?:src|href)="([^"]+)"', html)
    urls += re.findall(r"url: ['\"]([^'\"]+)['\"]", html)
    return [u for u in urls if not u.startswith("#")]


async def test_docs_and_redoc_load_their_assets_from_the_server(client):
    for page in ("/docs", "/redoc"):
        response = await client.get(page)
        assert response.status_code == 200 and "text/html" in response.headers["content-type"]
        assets = await _assets(client, page)
        scripts = [a for a in assets if a.endswith(".js")]
        assert scripts, f"{page} has no script"
        for asset in assets:
            assert not asset.startswith(("http://", "https://", "//")), f"{page} loads {asset}"
            loaded = await client.get(urljoin(f"http://testserver{page}", asset))
            assert loaded.status_code == 200, asset
            assert len(loaded.content) > 100, asset
    assert "cdn" not in (await client.get("/docs")).text.lower()
