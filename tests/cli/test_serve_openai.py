#!/usr/bin/env python3
"""`mlarun serve` with the real `openai` Python client: models, completions (text and ids), chat, streaming with
usage, and the client's exceptions for 400/404. Exits 77 (ctest's skip) when the package is not installed.
Usage: test_serve_openai.py MLARUN_BINARY TEST_DATA_DIR"""
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

try:
    import openai
except ImportError:
    print("skipped: the openai package is not installed (pip install openai)")
    sys.exit(77)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    binary, data = sys.argv[1], sys.argv[2]
    port = free_port()
    proc = subprocess.Popen([binary, "serve", "--model", os.path.join(data, "deepseek-v3-tiny"), "--tokenizer",
                             os.path.join(data, "tokenizers", "v3-tiny"), "--device", "cpu", "--port", str(port),
                             "--served-model-name", "tiny", "--max-model-len", "128"])
    try:
        for _ in range(600):
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).status == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None:
                raise SystemExit("mlarun serve exited early")
            time.sleep(0.1)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none")
        assert [m.id for m in client.models.list().data] == ["tiny"]
        extra = {"ignore_eos": True}
        c = client.completions.create(model="tiny", prompt="The quick brown fox", max_tokens=10, temperature=0,
                                      extra_body=extra)
        assert c.choices[0].finish_reason == "length" and c.usage.completion_tokens == 10, c
        ids = client.completions.create(model="tiny", prompt=[5, 17, 42], max_tokens=5, temperature=0,
                                        extra_body=extra)
        assert ids.usage.prompt_tokens == 3, ids
        stream = client.completions.create(model="tiny", prompt="The quick brown fox", max_tokens=10, temperature=0,
                                           stream=True, stream_options={"include_usage": True}, extra_body=extra)
        text, usage = "", None
        for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].text
            if chunk.usage:
                usage = chunk.usage
        assert text == c.choices[0].text, (text, c.choices[0].text)
        assert usage is not None and usage.completion_tokens == 10, usage
        msgs = [{"role": "user", "content": "Hello"}]
        chat = client.chat.completions.create(model="tiny", messages=msgs, max_tokens=8, temperature=0,
                                              extra_body=extra)
        streamed = "".join(ch.choices[0].delta.content or "" for ch in client.chat.completions.create(
            model="tiny", messages=msgs, max_tokens=8, temperature=0, stream=True, extra_body=extra) if ch.choices)
        assert chat.choices[0].message.role == "assistant"
        assert streamed == chat.choices[0].message.content, (streamed, chat.choices[0].message.content)
        try:
            client.completions.create(model="tiny", prompt="x", max_tokens=-1)
            raise AssertionError("max_tokens=-1 was accepted")
        except openai.BadRequestError as e:
            assert "max_tokens" in str(e), e
        try:
            client.completions.create(model="other", prompt="x")
            raise AssertionError("an unknown model was accepted")
        except openai.NotFoundError:
            pass
        print("serve_openai_client: ok")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()
