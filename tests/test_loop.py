"""The whole loop on one machine: editor -> trustfix serve -> outbox -> ZeroMQ -> trainer daemon
-> PPO update -> new policy version -> back in the server, ranking the next request; and the
trainer's trust in the reviewer back in the editor (``trustfix.trust``, ``trustfix/status``)."""

import asyncio
import threading
from pathlib import Path

import pytest
from pytest_lsp import client_capabilities
from test_lsp import ADD_LINE, BUGGY, actions, command, events, open_doc, start, stop
from trustfix.server.privacy import installation_key, pseudonym
from trustfix.trainer.config import EncoderConfig, StreamConfig, TrustfixConfig
from trustfix.trainer.daemon import TrainerDaemon
from trustfix.trainer.store import TrainerStore

FAST = StreamConfig(update_every=2, min_samples=1, update_seconds=1.0, update_min_interval_s=0.5)
HASHING = TrustfixConfig(encoders=EncoderConfig(text_encoder="hashing", code_encoder="hashing"))


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_feedback_reaches_the_trainer_and_a_new_policy_comes_back(tmp_path: Path) -> None:
    daemon = TrainerDaemon(
        tmp_path / "trainer.sqlite",
        tmp_path / "trainer-ckpt",
        "tcp://127.0.0.1:0",
        "tcp://127.0.0.1:0",
        HASHING,
        FAST,
    )
    thread = threading.Thread(target=daemon.serve_forever, daemon=True)
    thread.start()
    client = await start(
        tmp_path,
        client_capabilities("visual_studio_code"),
        trainerEndpoint=daemon.endpoint,
        trainerPublishEndpoint=daemon.pub_endpoint,
        checkpointPoll=0.2,
        offerExpiry=600,
    )
    uri = (tmp_path / "buggy.py").as_uri()
    try:
        open_doc(client, uri, BUGGY)
        offered = await actions(client, uri, ADD_LINE)
        ids = [a.command.arguments[0] for a in offered]
        await command(client, "trustfix.accept", ids[0])
        await command(client, "trustfix.rate", ids[0], 5)
        await command(client, "trustfix.reject", ids[1])
        await command(client, "trustfix.reject", ids[2])
        version = None
        for _ in range(600):
            await asyncio.sleep(0.2)
            version = (await command(client, "trustfix.trust"))["policyVersion"]
            if version is not None:
                break
        assert version is not None, "no policy version came back from the trainer"
        assert "sent to the trainer" in (await command(client, "trustfix.trust"))["lastFeedback"]
        assert any(s.get("policyVersion") == version for s in client.statuses)
        again = await actions(client, uri, ADD_LINE)  # ranked by the trainer's policy now
        assert again
        # the trainer's trust in this reviewer comes back to the editor once the learner saved it
        reviewer = pseudonym("ada", installation_key(tmp_path / "data"))
        for _ in range(300):
            saved = daemon.store.reviewer_trust(reviewer)
            reported = await command(client, "trustfix.trust")
            if saved is not None and reported["trust"] == saved["theta"]:
                break
            await asyncio.sleep(0.2)
        assert saved is not None and reported["trust"] == saved["theta"], (saved, reported)
        assert (reported["alpha"], reported["beta"]) == (saved["alpha"], saved["beta"])
        assert 0 < saved["theta"] < 1 and saved["count"] == 4
        assert any(s["trust"] == saved["theta"] for s in client.statuses)
        for _ in range(50):  # every event acked by the trainer has left the outbox
            if events(tmp_path) == ([], []):
                break
            await asyncio.sleep(0.2)
        assert events(tmp_path) == ([], [])
    finally:
        await stop(client)
        daemon.stop()
        thread.join(60)
    store = TrainerStore(tmp_path / "trainer.sqlite")
    assert store.count("suggestion") >= 3 and store.count("feedback") == 4
    assert store.versions() and store.versions()[0]["version"] >= 1
    assert (tmp_path / "data" / "checkpoints").is_dir()
    assert not thread.is_alive()
