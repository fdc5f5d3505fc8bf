"""``python -m alpha_panda.testing.fake_kite``: a fake Kite for local runs and demos."""

from __future__ import annotations

import json
import sys
import threading

from alpha_panda.testing.fake_kite import FakeKite


def main(argv: list[str] | None = None) -> None:
    """Serve a fake Kite until killed; print its URLs and credentials as one JSON line."""
    import argparse

    parser = argparse.ArgumentParser(description="A fake Zerodha Kite Connect for local runs")
    parser.add_argument("--tick-interval", type=float, default=0.5,
                        help="seconds between random-walk ticks to subscribers (0: none)")
    parser.add_argument("--api-key", default="fake_api_key")
    parser.add_argument("--api-secret", default="fake_api_secret")
    parser.add_argument("--port", type=int, default=0, help="REST port (default: any free one)")
    parser.add_argument("--ws-port", type=int, default=0,
                        help="ticker websocket port (default: any free one)")
    args = parser.parse_args(argv)
    try:
        fake = FakeKite(api_key=args.api_key, api_secret=args.api_secret).start(
            args.port, args.ws_port)
    except OSError as exc:
        sys.exit(f"fake Kite: {exc}")
    if args.tick_interval > 0:
        fake.start_streaming(args.tick_interval)
    print(json.dumps({"root_url": fake.root_url, "ws_url": fake.ws_url, "api_key": fake.api_key,
                      "api_secret": fake.api_secret, "request_token": "fake_request_token",
                      "login_url": f"{fake.root_url}/connect/login"}), flush=True)
    # what points Alpha Panda at it (on stderr: stdout is the JSON line's alone)
    print(f"export ALPHA_PANDA_ZERODHA__ROOT_URL={fake.root_url} "
          f"ALPHA_PANDA_ZERODHA__LOGIN_URL={fake.root_url}/connect/login "
          f"ALPHA_PANDA_ZERODHA__WS_URL={fake.ws_url} "
          f"ALPHA_PANDA_ZERODHA__API_KEY={fake.api_key} "
          f"ALPHA_PANDA_ZERODHA__API_SECRET={fake.api_secret}", file=sys.stderr, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass  # Ctrl-C: stop quietly
    finally:
        fake.stop()
        sys.stdout.flush()


if __name__ == "__main__":
    main()
