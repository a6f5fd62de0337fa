"""The tools endpoints, and tools called by agents during executions."""

from __future__ import annotations

import pytest

from cadre.engine.tools.registry import TOOLS
from cadre.spec_docs import authored_spec
from tests.conftest import (
    Account,
    assert_problem,
    events_of,
    execute,
    register,
    wait_for_status,
)

TERMINAL = ("completed", "failed", "cancelled")


def workspace_of(settings, account: Account):
    return settings.data_dir / "workspaces" / account.id


class TestListTools:
    def test_lists_the_builtins_with_their_argument_schemas(self, client, alice: Account):
        tools = client.get("/api/v1/tools", headers=alice.headers).json()["tools"]
        names = {t["name"] for t in tools}
        assert {
            "filesystem_read",
            "filesystem_write",
            "filesystem_list",
            "python_ast_parser",
            "calculator",
        } <= names
        read = next(t for t in tools if t["name"] == "filesystem_read")
        assert read["category"] == "filesystem"
        assert read["parameters"]["type"] == "object"
        assert "path" in read["parameters"]["properties"]

    def test_lists_the_search_edit_and_shell_tools(self, client, alice: Account):
        tools = client.get("/api/v1/tools", headers=alice.headers).json()["tools"]
        categories = {t["name"]: t["category"] for t in tools}
        assert [t["name"] for t in tools] == sorted(TOOLS)
        assert categories["filesystem_edit"] == "filesystem"
        assert categories["filesystem_glob"] == "filesystem"
        assert categories["filesystem_grep"] == "filesystem"
        assert categories["shell"] == "shell"
        shell = next(t for t in tools if t["name"] == "shell")
        assert shell["parameters"]["required"] == ["command"]

    def test_category_filter(self, client, alice: Account):
        tools = client.get("/api/v1/tools?category=filesystem", headers=alice.headers).json()
        assert {t["category"] for t in tools["tools"]} == {"filesystem"}
        assert client.get("/api/v1/tools?category=nope", headers=alice.headers).json() == {
            "tools": []
        }


class TestExecuteTool:
    def test_seed_example_reads_a_file_from_the_workspace(self, client, settings, alice: Account):
        written = client.post(
            "/api/v1/tools/filesystem_write/execute",
            json={"args": {"path": "test.txt", "content": "File contents..."}},
            headers=alice.headers,
        )
        assert written.status_code == 200
        assert (workspace_of(settings, alice) / "test.txt").read_text() == "File contents..."
        reply = client.post(
            "/api/v1/tools/filesystem_read/execute",
            json={"args": {"path": "test.txt", "encoding": "utf-8"}},
            headers=alice.headers,
        )
        assert reply.status_code == 200
        assert reply.json() == {"result": {"content": "File contents...", "size": 16}}

    def test_workspaces_are_per_user(self, client, alice: Account, bob: Account):
        client.post(
            "/api/v1/tools/filesystem_write/execute",
            json={"args": {"path": "secret.txt", "content": "alice only"}},
            headers=alice.headers,
        )
        reply = client.post(
            "/api/v1/tools/filesystem_read/execute",
            json={"args": {"path": "secret.txt"}},
            headers=bob.headers,
        )
        assert_problem(reply, 404, "file_not_found")

    @pytest.mark.parametrize("path", ["../escape.txt", "/etc/passwd", "a/../../x"])
    def test_paths_outside_the_workspace_are_403(self, client, alice: Account, path: str):
        reply = client.post(
            "/api/v1/tools/filesystem_read/execute",
            json={"args": {"path": path}},
            headers=alice.headers,
        )
        assert_problem(reply, 403, "path_outside_workspace")

    def test_bad_args_are_422_naming_each_field(self, client, alice: Account):
        reply = client.post(
            "/api/v1/tools/filesystem_read/execute",
            json={"args": {"encoding": 7, "colour": "red"}},
            headers=alice.headers,
        )
        body = assert_problem(reply, 422, "validation_error")
        assert "args.path" in body["details"]

    def test_unknown_tool_is_404(self, client, alice: Account):
        reply = client.post(
            "/api/v1/tools/teleport/execute", json={"args": {}}, headers=alice.headers
        )
        assert_problem(reply, 404, "tool_not_found")

    def test_edit_glob_and_grep_work_on_the_callers_workspace(self, client, alice: Account):
        def call(tool: str, **args):
            return client.post(
                f"/api/v1/tools/{tool}/execute", json={"args": args}, headers=alice.headers
            )

        assert call("filesystem_write", path="src/app.py", content="x = 1\n").status_code == 200
        edited = call("filesystem_edit", path="src/app.py", old_string="1", new_string="2")
        assert edited.json() == {"result": {"path": "src/app.py", "replacements": 1}}
        found = call("filesystem_glob", pattern="**/*.py")
        assert found.json() == {"result": {"matches": ["src/app.py"], "truncated": False}}
        lines = call("filesystem_grep", pattern=r"x = \d")
        assert lines.json()["result"]["matches"] == [
            {"path": "src/app.py", "line_number": 1, "line": "x = 2"}
        ]
        assert_problem(call("filesystem_glob", pattern="../*"), 403, "path_outside_workspace")
        missing = call("filesystem_edit", path="src/app.py", old_string="zzz", new_string="y")
        assert_problem(missing, 422, "tool_error")

    def test_shell_is_403_unless_enabled(self, client, settings, alice: Account):
        reply = client.post(
            "/api/v1/tools/shell/execute",
            json={"args": {"command": "touch made"}},
            headers=alice.headers,
        )
        assert_problem(reply, 403, "tool_refused")
        assert not (workspace_of(settings, alice) / "made").exists()

    def test_calculator(self, client, alice: Account):
        reply = client.post(
            "/api/v1/tools/calculator/execute",
            json={"args": {"expression": "2 * (3 + 4)"}},
            headers=alice.headers,
        )
        assert reply.json() == {"result": {"result": 14}}


class TestAgentTools:
    def test_agent_tools_must_be_registered(self, client, alice: Account):
        reply = client.post(
            "/api/v1/agents",
            json={"name": "bad", "tools": ["filesystem_read", "teleport"]},
            headers=alice.headers,
        )
        body = assert_problem(reply, 422, "validation_error")
        assert list(body["details"]) == ["body.tools.1"]

    def test_the_spec_tool_names_are_the_registry_names(self):
        spec = authored_spec()
        assert spec["components"]["schemas"]["ToolName"]["enum"] == sorted(TOOLS)

    def _agent(self, client, alice, tools):
        client.post(
            "/api/v1/agents", json={"name": "worker", "tools": tools}, headers=alice.headers
        )

    def test_tool_calls_and_results_are_events_and_feed_the_answer(self, client, settings, alice):
        self._agent(client, alice, ["filesystem_read"])
        workspace = workspace_of(settings, alice)
        workspace.mkdir(parents=True, exist_ok=True)
        (workspace / "notes.txt").write_text("remember")
        calls = [{"tool": "filesystem_read", "args": {"path": "notes.txt"}}]
        execution_id = execute(
            client, alice, "worker", "summarise", inputs={"echo": {"tool_calls": calls}}
        )
        done = wait_for_status(client, alice, execution_id, TERMINAL)
        assert done["status"] == "completed"
        assert done["result"]["tool_calls"] == 1
        assert done["steps"] == 3  # provider, tool, provider
        assert "remember" in done["result"]["output"]
        events = events_of(client, alice, execution_id)
        call = next(e for e in events if e["type"] == "tool_call")
        result = next(e for e in events if e["type"] == "tool_result")
        assert (call["tool"], call["args"]) == ("filesystem_read", {"path": "notes.txt"})
        assert result["result"] == {"content": "remember", "size": 8}
        assert result["call_id"] == call["call_id"]

    def test_safe_mode_refuses_writes_and_records_the_refusal(self, client, settings, alice):
        self._agent(client, alice, ["filesystem_write"])
        calls = [{"tool": "filesystem_write", "args": {"path": "x.txt", "content": "hi"}}]
        execution_id = execute(
            client, alice, "worker", mode="safe", inputs={"echo": {"tool_calls": calls}}
        )
        done = wait_for_status(client, alice, execution_id, TERMINAL)
        assert done["status"] == "completed"
        refusal = next(
            e for e in events_of(client, alice, execution_id) if e["type"] == "tool_result"
        )
        assert refusal["code"] == "tool_refused"
        assert not (workspace_of(settings, alice) / "x.txt").exists()

    def test_sandbox_mode_writes_to_a_throwaway_copy(self, client, settings, alice):
        self._agent(client, alice, ["filesystem_write"])
        calls = [{"tool": "filesystem_write", "args": {"path": "x.txt", "content": "hi"}}]
        execution_id = execute(
            client, alice, "worker", mode="sandbox", inputs={"echo": {"tool_calls": calls}}
        )
        wait_for_status(client, alice, execution_id, TERMINAL)
        written = next(
            e for e in events_of(client, alice, execution_id) if e["type"] == "tool_result"
        )
        assert written["result"]["size"] == 2
        assert not (workspace_of(settings, alice) / "x.txt").exists()

    def test_an_enabled_shell_runs_in_a_sandbox_run_with_the_settings_limits(
        self, make_client, make_settings
    ):
        client = make_client(shell_enabled=True, shell_output_bytes=1024)
        settings, alice = make_settings(), register(client, "alice")
        self._agent(client, alice, ["shell"])
        calls = [
            {"tool": "shell", "args": {"command": "echo hi > made.txt; cat made.txt"}},
            {"tool": "shell", "args": {"command": "yes"}},
        ]
        execution_id = execute(
            client, alice, "worker", mode="sandbox", inputs={"echo": {"tool_calls": calls}}
        )
        assert wait_for_status(client, alice, execution_id, TERMINAL)["status"] == "completed"
        made, endless = [
            e["result"]
            for e in events_of(client, alice, execution_id)
            if e["type"] == "tool_result"
        ]
        assert (made["exit_code"], made["stdout"]) == (0, "hi\n")
        assert endless["stopped"] == "output_limit" and len(endless["stdout"]) == 1024
        assert not (workspace_of(settings, alice) / "made.txt").exists()  # the copy's, not yours

    def test_a_write_over_the_quota_is_a_tool_result_error(self, client, settings, alice):
        self._agent(client, alice, ["filesystem_write"])
        workspace_of(settings, alice).mkdir(parents=True, exist_ok=True)
        with (workspace_of(settings, alice) / "full.bin").open("wb") as sparse:
            sparse.truncate(settings.workspace_quota_bytes - 1)  # sparse: costs no disk
        calls = [{"tool": "filesystem_write", "args": {"path": "x.txt", "content": "hi"}}]
        execution_id = execute(
            client, alice, "worker", mode="full", inputs={"echo": {"tool_calls": calls}}
        )
        done = wait_for_status(client, alice, execution_id, TERMINAL)
        assert done["status"] == "completed"
        refusal = next(
            e for e in events_of(client, alice, execution_id) if e["type"] == "tool_result"
        )
        assert refusal["code"] == "workspace_quota_exceeded"
        assert "CADRE_WORKSPACE_QUOTA_MB" in refusal["error"]
        assert not (workspace_of(settings, alice) / "x.txt").exists()

    def test_sandbox_of_a_workspace_over_its_quota_fails_cleanly(self, client, settings, alice):
        self._agent(client, alice, ["filesystem_write"])
        workspace_of(settings, alice).mkdir(parents=True, exist_ok=True)
        with (workspace_of(settings, alice) / "full.bin").open("wb") as sparse:
            sparse.truncate(settings.workspace_quota_bytes + 1)
        calls = [{"tool": "filesystem_write", "args": {"path": "x.txt", "content": "hi"}}]
        execution_id = execute(
            client, alice, "worker", mode="sandbox", inputs={"echo": {"tool_calls": calls}}
        )
        done = wait_for_status(client, alice, execution_id, TERMINAL)
        assert (done["status"], done["stop_reason"]) == ("failed", "tool_error")
        assert "no sandbox copy" in done["error"]

    def test_full_mode_writes_to_the_workspace(self, client, settings, alice):
        self._agent(client, alice, ["filesystem_write"])
        calls = [{"tool": "filesystem_write", "args": {"path": "x.txt", "content": "hi"}}]
        execution_id = execute(
            client, alice, "worker", mode="full", inputs={"echo": {"tool_calls": calls}}
        )
        wait_for_status(client, alice, execution_id, TERMINAL)
        assert (workspace_of(settings, alice) / "x.txt").read_text() == "hi"

    def test_escaping_path_is_refused_as_an_event(self, client, alice):
        self._agent(client, alice, ["filesystem_read"])
        calls = [{"tool": "filesystem_read", "args": {"path": "../../etc/passwd"}}]
        execution_id = execute(client, alice, "worker", inputs={"echo": {"tool_calls": calls}})
        wait_for_status(client, alice, execution_id, TERMINAL)
        result = next(
            e for e in events_of(client, alice, execution_id) if e["type"] == "tool_result"
        )
        assert result["code"] == "path_outside_workspace"
        assert "result" not in result

    def test_a_tool_the_agent_lacks_is_refused(self, client, alice):
        self._agent(client, alice, [])
        calls = [{"tool": "calculator", "args": {"expression": "1+1"}}]
        execution_id = execute(client, alice, "worker", inputs={"echo": {"tool_calls": calls}})
        wait_for_status(client, alice, execution_id, TERMINAL)
        result = next(
            e for e in events_of(client, alice, execution_id) if e["type"] == "tool_result"
        )
        assert result["code"] == "tool_not_available"
