"""OpenAI chat completions translate to Anthropic Messages and back, streaming included."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any

import orjson
import pytest

from hotpath import ConfigError, HotpathError
from hotpath._errors import UpstreamError, UpstreamStreamCutError
from hotpath.providers._anthropic import (
    StreamTranslator,
    TranslationError,
    UpstreamProtocolError,
    UpstreamStreamError,
    anthropic_error_to_openai,
    chat_to_messages,
    messages_to_chat,
)

MODEL = "claude-sonnet-4-5-20250929"
PUBLIC = "claude-sonnet"
CREATED = 1_750_000_000
MESSAGE_ID = "msg_014p7gG3wDgGV9EUtLvnow3U"

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
        },
        "strict": True,
    },
}
WEATHER_SCHEMA = WEATHER_TOOL["function"]["parameters"]  # type: ignore[index]


def translate(**body: Any) -> dict[str, Any]:
    return chat_to_messages(body, model=MODEL)


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


# --- chat_to_messages: the request ---------------------------------------------------


def test_minimal_request_gets_deployment_model_and_default_max_tokens() -> None:
    body = {"model": PUBLIC, "messages": [user("Hello")]}
    assert chat_to_messages(body, model=MODEL, default_max_tokens=1024) == {
        "model": MODEL,
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "Hello"}],
    }


def test_sampling_fields_map_and_inert_fields_are_dropped() -> None:
    out = translate(
        model=PUBLIC,
        messages=[user("Hi")],
        max_tokens=50,
        max_completion_tokens=300,
        stop="\n\nHuman:",
        temperature=0.7,
        top_p=0.9,
        stream=True,
        stream_options={"include_usage": True},
        user="user-1234",
        seed=42,
        n=1,
        logprobs=False,
        top_logprobs=0,
        logit_bias={},
        presence_penalty=0.5,
        frequency_penalty=0.5,
        store=False,
        metadata={"team": "search"},
        service_tier="auto",
        reasoning_effort="low",
        parallel_tool_calls=True,
        some_future_field={"x": 1},
    )
    assert out == {
        "model": MODEL,
        "max_tokens": 300,  # max_completion_tokens wins over the deprecated max_tokens
        "messages": [{"role": "user", "content": "Hi"}],
        "stop_sequences": ["\n\nHuman:"],
        "temperature": 0.7,
        "top_p": 0.9,
        "stream": True,
        "metadata": {"user_id": "user-1234"},
    }


def test_max_tokens_alone_is_used() -> None:
    assert translate(messages=[user("Hi")], max_tokens=77)["max_tokens"] == 77


@pytest.mark.parametrize(("given", "sent"), [(0, 0), (0.3, 0.3), (1, 1), (1.5, 1.0), (2, 1.0)])
def test_temperature_passes_through_clamped_to_one(given: float, sent: float) -> None:
    assert translate(messages=[user("Hi")], temperature=given)["temperature"] == sent


def test_stop_list_becomes_stop_sequences_and_stream_false_is_omitted() -> None:
    out = translate(messages=[user("Hi")], stop=["END", "STOP"], stream=False)
    assert out["stop_sequences"] == ["END", "STOP"]
    assert "stream" not in out


def test_one_system_message_becomes_a_string() -> None:
    out = translate(messages=[{"role": "system", "content": "Be brief."}, user("Hi")])
    assert out["system"] == "Be brief."
    assert out["messages"] == [{"role": "user", "content": "Hi"}]


def test_system_and_developer_messages_anywhere_join_the_system_blocks_in_order() -> None:
    out = translate(
        messages=[
            {"role": "system", "content": "You are a helpful assistant."},
            user("Hi"),
            {"role": "assistant", "content": "Hello!"},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            user("How are you?"),
        ]
    )
    assert out["system"] == [
        {"type": "text", "text": "You are a helpful assistant."},
        {"type": "text", "text": "Answer in French."},
    ]
    assert out["messages"] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "How are you?"},
    ]


def test_system_cache_control_is_kept_as_a_block() -> None:
    cached = {"type": "ephemeral"}
    part = {"type": "text", "text": "A long, stable prompt.", "cache_control": cached}
    out = translate(messages=[{"role": "system", "content": [part]}, user("Hi")])
    assert out["system"] == [
        {"type": "text", "text": "A long, stable prompt.", "cache_control": {"type": "ephemeral"}}
    ]


def test_multi_turn_tool_conversation() -> None:
    messages = [
        {"role": "system", "content": "You can look up the weather."},
        user("Weather in Paris and Tokyo?"),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_paris",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
                },
                {
                    "id": "call_tokyo",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location":"Tokyo"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_paris", "content": "18C, cloudy"},
        {
            "role": "tool",
            "tool_call_id": "call_tokyo",
            "content": [{"type": "text", "text": "25C, sunny"}],
        },
        user("Which is warmer?"),
    ]
    out = translate(model=PUBLIC, messages=messages, tools=[WEATHER_TOOL], tool_choice="auto")
    assert out == {
        "model": MODEL,
        "max_tokens": 4096,
        "system": "You can look up the weather.",
        "messages": [
            {"role": "user", "content": "Weather in Paris and Tokyo?"},
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "call_paris",
                        "name": "get_weather",
                        "input": {"location": "Paris"},
                    },
                    {
                        "type": "tool_use",
                        "id": "call_tokyo",
                        "name": "get_weather",
                        "input": {"location": "Tokyo"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_paris", "content": "18C, cloudy"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "call_tokyo",
                        "content": [{"type": "text", "text": "25C, sunny"}],
                    },
                    {"type": "text", "text": "Which is warmer?"},
                ],
            },
        ],
        "tools": [
            {
                "name": "get_weather",
                "description": "Current weather for a city.",
                "input_schema": WEATHER_SCHEMA,
            }
        ],
        "tool_choice": {"type": "auto"},
    }


def test_assistant_text_before_tool_calls_is_kept_and_empty_arguments_mean_no_input() -> None:
    out = translate(
        messages=[
            user("What time is it?"),
            {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "now", "arguments": ""}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": ""},
        ],
        tools=[{"type": "function", "function": {"name": "now"}}],
    )
    assert out["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "c1", "name": "now", "input": {}},
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c1"}]},
    ]
    assert out["tools"] == [{"name": "now", "input_schema": {"type": "object", "properties": {}}}]


def test_consecutive_same_role_messages_merge_into_one_turn() -> None:
    out = translate(
        messages=[
            user("First."),
            {"role": "user", "content": [{"type": "text", "text": "Second."}]},
            {"role": "assistant", "content": "A"},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "B"}]},
            user("Third."),
        ]
    )
    assert out["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "First."}, {"type": "text", "text": "Second."}],
        },
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}],
        },
        {"role": "user", "content": "Third."},
    ]


def test_empty_messages_are_left_out_so_their_neighbours_merge() -> None:
    out = translate(messages=[user("a"), {"role": "assistant", "content": ""}, user("b")])
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    ]


def test_empty_text_parts_are_left_out_and_tool_cache_control_is_kept() -> None:
    content = [{"type": "text", "text": ""}, {"type": "text", "text": "Hi"}]
    tool = {**WEATHER_TOOL, "cache_control": {"type": "ephemeral"}}
    out = translate(messages=[{"role": "user", "content": content}], tools=[tool])
    assert out["messages"] == [{"role": "user", "content": "Hi"}]
    assert out["tools"][0]["cache_control"] == {"type": "ephemeral"}


def test_tool_results_come_first_in_a_merged_user_turn() -> None:
    out = translate(
        messages=[
            user("Go."),
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            user("(note)"),
            {"role": "tool", "tool_call_id": "c1", "content": "done"},
        ],
        tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    )
    assert [block["type"] for block in out["messages"][2]["content"]] == ["tool_result", "text"]


def test_image_and_pdf_parts() -> None:
    content = [
        {"type": "text", "text": "Compare these."},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {
            "type": "image_url",
            "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"},
        },
        {"type": "image_url", "image_url": {"url": "data:image/jpg;base64,/9j/4AAQ"}},
        {
            "type": "file",
            "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"},
        },
    ]
    out = translate(messages=[{"role": "user", "content": content}])
    assert out["messages"][0]["content"] == [
        {"type": "text", "text": "Compare these."},
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
        },
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"},
        },
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"},
        },
    ]


@pytest.mark.parametrize(
    ("tool_choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"type": "tool", "name": "get_weather"},
        ),
    ],
)
def test_tool_choice_maps(tool_choice: Any, expected: dict[str, Any]) -> None:
    out = translate(messages=[user("Hi")], tools=[WEATHER_TOOL], tool_choice=tool_choice)
    assert out["tool_choice"] == expected


@pytest.mark.parametrize(
    ("tool_choice", "expected"),
    [
        (None, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", {"type": "any", "disable_parallel_tool_use": True}),
        ("none", {"type": "none"}),  # nothing to run in parallel; Anthropic's none has no flag
    ],
)
def test_parallel_tool_calls_false_disables_parallel_tool_use(
    tool_choice: Any, expected: dict[str, Any]
) -> None:
    body: dict[str, Any] = {
        "messages": [user("Hi")],
        "tools": [WEATHER_TOOL],
        "parallel_tool_calls": False,
    }
    if tool_choice is not None:
        body["tool_choice"] = tool_choice
    assert chat_to_messages(body, model=MODEL)["tool_choice"] == expected


def test_tool_choice_without_tools_is_dropped_when_it_asks_for_nothing() -> None:
    for choice in ("auto", "none"):
        out = translate(messages=[user("Hi")], tool_choice=choice, parallel_tool_calls=False)
        assert "tool_choice" not in out
        assert "tools" not in out


def test_json_object_response_format_appends_a_system_instruction() -> None:
    out = translate(
        messages=[{"role": "system", "content": "Extract the date."}, user("Born 1 May 1990.")],
        response_format={"type": "json_object"},
    )
    assert out["system"][0] == {"type": "text", "text": "Extract the date."}
    assert "valid JSON object" in out["system"][1]["text"]


def test_json_schema_response_format_puts_the_schema_in_the_instruction() -> None:
    schema = {"type": "object", "properties": {"year": {"type": "integer"}}}
    out = translate(
        messages=[user("Born 1 May 1990.")],
        response_format={"type": "json_schema", "json_schema": {"name": "d", "schema": schema}},
    )
    assert isinstance(out["system"], str)
    assert '{"properties":{"year":{"type":"integer"}},"type":"object"}' in out["system"]


def test_text_response_format_changes_nothing() -> None:
    assert "system" not in translate(messages=[user("Hi")], response_format={"type": "text"})


def test_input_body_is_not_modified() -> None:
    body = {
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "S"}]},
            user("a"),
            {"role": "user", "content": [{"type": "text", "text": "b"}]},
        ],
        "tools": [WEATHER_TOOL],
        "parallel_tool_calls": False,
    }
    before = copy.deepcopy(body)
    chat_to_messages(body, model=MODEL)
    assert body == before


def tool_call(arguments: Any) -> dict[str, Any]:
    return {
        "role": "assistant",
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}
        ],
    }


@pytest.mark.parametrize(
    ("body", "param", "shown"),
    [
        ({}, "messages", "None"),
        ({"messages": []}, "messages", "[]"),
        ({"messages": [{"role": "system", "content": "S"}]}, "messages", "at least one"),
        ({"messages": [user("a"), {"role": "bot"}]}, "messages[1].role", "'bot'"),
        ({"messages": ["hello"]}, "messages[0]", "'hello'"),
        (
            {"messages": [user("a"), tool_call('{"city": "Par')]},
            "messages[1].tool_calls[0].function.arguments",
            '\'{"city": "Par\'',
        ),
        (
            {"messages": [user("a"), tool_call("[1, 2]")]},
            "messages[1].tool_calls[0].function.arguments",
            "'[1, 2]'",
        ),
        (
            {"messages": [user("a"), tool_call({"city": "Paris"})]},
            "messages[1].tool_calls[0].function.arguments",
            "{'city': 'Paris'}",
        ),
        (
            {"messages": [{"role": "tool", "content": "x"}]},
            "messages[0].tool_call_id",
            "None",
        ),
        (
            {"messages": [{"role": "assistant", "function_call": {"name": "f"}}]},
            "messages[0].function_call",
            "legacy",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]},
            "messages[0].content[0]",
            "'input_audio'",
        ),
        (
            {"messages": [{"role": "user", "content": 42}]},
            "messages[0].content",
            "42",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "see"},
                            {"type": "image_url", "image_url": {"url": "ftp://x/cat.png"}},
                        ],
                    }
                ]
            },
            "messages[0].content[1].image_url.url",
            "'ftp://x/cat.png'",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image_url",
                                "image_url": {"url": "data:image/bmp;base64,Qk0="},
                            }
                        ],
                    }
                ]
            },
            "messages[0].content[0].image_url.url",
            "'image/bmp'",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}
                ]
            },
            "messages[0].content[0].file",
            "'file-1'",
        ),
        ({"messages": [user("a")], "n": 2}, "n", "2"),
        ({"messages": [user("a")], "logprobs": True}, "logprobs", "True"),
        ({"messages": [user("a")], "top_logprobs": 5}, "top_logprobs", "5"),
        ({"messages": [user("a")], "logit_bias": {"50256": -100}}, "logit_bias", "-100"),
        ({"messages": [user("a")], "modalities": ["text", "audio"]}, "modalities", "'audio'"),
        ({"messages": [user("a")], "functions": [{"name": "f"}]}, "functions", "'f'"),
        ({"messages": [user("a")], "temperature": 2.5}, "temperature", "2.5"),
        ({"messages": [user("a")], "temperature": "hot"}, "temperature", "'hot'"),
        ({"messages": [user("a")], "top_p": 1.5}, "top_p", "1.5"),
        ({"messages": [user("a")], "max_tokens": 0}, "max_tokens", "0"),
        ({"messages": [user("a")], "max_completion_tokens": True}, "max_completion_tokens", "True"),
        ({"messages": [user("a")], "stop": ["END", 1]}, "stop[1]", "1"),
        ({"messages": [user("a")], "stop": 42}, "stop", "42"),
        ({"messages": [user("a")], "tools": {"f": 1}}, "tools", "{'f': 1}"),
        (
            {
                "messages": [user("a")],
                "tools": [{"type": "function", "function": {"name": "f", "parameters": "{}"}}],
            },
            "tools[0].function.parameters",
            "'{}'",
        ),
        (
            {"messages": [user("a"), {"role": "assistant", "tool_calls": {"id": "c1"}}]},
            "messages[1].tool_calls",
            "{'id': 'c1'}",
        ),
        (
            {"messages": [user("a"), {"role": "assistant", "tool_calls": [{"type": "custom"}]}]},
            "messages[1].tool_calls[0]",
            "'custom'",
        ),
        (
            {
                "messages": [
                    user("a"),
                    {"role": "assistant", "tool_calls": [{"function": {"name": "f"}}]},
                ]
            },
            "messages[1].tool_calls[0].id",
            "None",
        ),
        (
            {
                "messages": [
                    user("a"),
                    {"role": "assistant", "tool_calls": [{"id": "c1", "function": {"args": 1}}]},
                ]
            },
            "messages[1].tool_calls[0].function",
            "{'args': 1}",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": None}]}]},
            "messages[0].content[0].text",
            "None",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}]},
            "messages[0].content[0].image_url",
            "'x'",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "file", "file": {"file_data": "data:text/csv;base64,YSxi"}}
                        ],
                    }
                ]
            },
            "messages[0].content[0].file.file_data",
            "'text/csv'",
        ),
        (
            {"messages": [{"role": "system", "content": [{"type": "image_url"}]}, user("a")]},
            "messages[0].content[0]",
            "'image_url'",
        ),
        ({"messages": [user("a")], "stream": "yes"}, "stream", "'yes'"),
        ({"messages": [user("a")], "user": 7}, "user", "7"),
        ({"messages": [user("a")], "tools": [{"type": "custom"}]}, "tools[0]", "'custom'"),
        (
            {"messages": [user("a")], "tools": [{"type": "function", "function": {}}]},
            "tools[0].function",
            "{}",
        ),
        ({"messages": [user("a")], "tool_choice": "required"}, "tool_choice", "'required'"),
        (
            {"messages": [user("a")], "tools": [WEATHER_TOOL], "tool_choice": "always"},
            "tool_choice",
            "'always'",
        ),
        ({"messages": [user("a")], "response_format": {"type": "xml"}}, "response_format", "xml"),
        (
            {"messages": [user("a")], "response_format": {"type": "json_schema"}},
            "response_format.json_schema",
            "None",
        ),
    ],
)
def test_invalid_requests_name_the_path_and_show_the_value(
    body: dict[str, Any], param: str, shown: str
) -> None:
    with pytest.raises(TranslationError) as info:
        chat_to_messages(body, model=MODEL)
    assert info.value.param == param
    assert shown in str(info.value)


def test_errors_sit_in_the_hotpath_tree() -> None:
    assert issubclass(TranslationError, HotpathError)
    assert issubclass(TranslationError, ValueError)
    assert not issubclass(TranslationError, UpstreamError)
    assert issubclass(UpstreamStreamError, UpstreamError)
    assert issubclass(UpstreamProtocolError, UpstreamError)
    assert issubclass(UpstreamProtocolError, ValueError)


def test_long_values_are_cut_in_error_messages() -> None:
    arguments = '{"text": "' + "x" * 5000
    with pytest.raises(TranslationError) as info:
        translate(messages=[user("a"), tool_call(arguments)])
    assert len(str(info.value)) < 300
    assert "chars)" in str(info.value)


@pytest.mark.parametrize("default", [0, -1, True, 1.5])
def test_bad_default_max_tokens_is_a_config_error(default: Any) -> None:
    with pytest.raises(ConfigError, match="default_max_tokens"):
        chat_to_messages({"messages": [user("a")]}, model=MODEL, default_max_tokens=default)


# --- messages_to_chat: the answer ----------------------------------------------------


def anthropic_response(
    content: list[dict[str, Any]],
    stop_reason: str = "end_turn",
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "id": MESSAGE_ID,
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage or {"input_tokens": 12, "output_tokens": 6},
    }


def test_text_answer() -> None:
    response = anthropic_response([{"type": "text", "text": "Hello! How can I help?"}])
    assert messages_to_chat(response, model=PUBLIC, created=CREATED) == {
        "id": f"chatcmpl-{MESSAGE_ID}",
        "object": "chat.completion",
        "created": CREATED,
        "model": PUBLIC,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello! How can I help?",
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18},
        "system_fingerprint": None,
    }


def test_text_and_tool_use_answer() -> None:
    response = anthropic_response(
        [
            {"type": "thinking", "thinking": "The user wants weather.", "signature": "EqQB"},
            {"type": "text", "text": "Let me check."},
            {
                "type": "tool_use",
                "id": "toolu_01A09q90qw90lq917835lq9",
                "name": "get_weather",
                "input": {"location": "San Francisco, CA", "unit": "celsius"},
            },
        ],
        stop_reason="tool_use",
    )
    choice = messages_to_chat(response, model=PUBLIC, created=CREATED)["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me check."
    assert choice["message"]["tool_calls"] == [
        {
            "id": "toolu_01A09q90qw90lq917835lq9",
            "type": "function",
            "function": {
                "name": "get_weather",
                "arguments": '{"location":"San Francisco, CA","unit":"celsius"}',
            },
        }
    ]


def test_tool_only_answer_has_null_content_and_empty_answer_has_empty_content() -> None:
    tool = {"type": "tool_use", "id": "toolu_1", "name": "now", "input": {}}
    only_tool = anthropic_response([tool], stop_reason="tool_use")
    message = messages_to_chat(only_tool, model=PUBLIC, created=CREATED)["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"][0]["function"]["arguments"] == "{}"
    empty = messages_to_chat(anthropic_response([]), model=PUBLIC, created=CREATED)
    assert empty["choices"][0]["message"]["content"] == ""
    assert "tool_calls" not in empty["choices"][0]["message"]


def test_text_blocks_are_joined_without_separator() -> None:
    blocks = [{"type": "text", "text": "One, "}, {"type": "text", "text": "two."}]
    out = messages_to_chat(anthropic_response(blocks), model=PUBLIC, created=CREATED)
    assert out["choices"][0]["message"]["content"] == "One, two."


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("something_new", "stop"),
        (None, "stop"),
    ],
)
def test_stop_reasons_map_to_finish_reasons(stop_reason: str | None, finish_reason: str) -> None:
    response = anthropic_response([{"type": "text", "text": "x"}])
    response["stop_reason"] = stop_reason
    out = messages_to_chat(response, model=PUBLIC, created=CREATED)
    assert out["choices"][0]["finish_reason"] == finish_reason


def test_cache_tokens_count_as_prompt_tokens_and_reads_as_cached() -> None:
    usage = {
        "input_tokens": 20,
        "cache_creation_input_tokens": 1000,
        "cache_read_input_tokens": 3000,
        "output_tokens": 50,
        "service_tier": "standard",
    }
    response = anthropic_response([{"type": "text", "text": "x"}], usage=usage)
    assert messages_to_chat(response, model=PUBLIC, created=CREATED)["usage"] == {
        "prompt_tokens": 4020,
        "completion_tokens": 50,
        "total_tokens": 4070,
        "prompt_tokens_details": {"cached_tokens": 3000},
    }


@pytest.mark.parametrize(
    "response",
    [
        {"content": []},
        {"id": "msg_1", "content": "Hello"},
        {"id": "msg_1", "content": ["Hello"]},
        {"id": "msg_1", "content": [{"type": "text"}]},
        {"id": "msg_1", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": "{}"}]},
    ],
)
def test_malformed_responses_raise_upstream_protocol_error(response: dict[str, Any]) -> None:
    with pytest.raises(UpstreamProtocolError):
        messages_to_chat(response, model=PUBLIC, created=CREATED)


def test_an_answer_fed_back_as_history_becomes_the_same_anthropic_turn() -> None:
    blocks: list[dict[str, Any]] = [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "Oslo"}},
    ]
    answer = messages_to_chat(anthropic_response(blocks), model=PUBLIC, created=CREATED)
    history = [user("Oslo?"), answer["choices"][0]["message"]]
    out = translate(messages=history, tools=[WEATHER_TOOL])
    assert out["messages"][1] == {"role": "assistant", "content": blocks}


# --- StreamTranslator ----------------------------------------------------------------


def ev(kind: str, **fields: Any) -> tuple[str, dict[str, Any]]:
    return kind, {"type": kind, **fields}


def message_start(**usage: int) -> tuple[str, dict[str, Any]]:
    message: dict[str, Any] = {
        "id": MESSAGE_ID,
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage or {"input_tokens": 472, "output_tokens": 2},
    }
    return ev("message_start", message=message)


def text_delta(index: int, text: str) -> tuple[str, dict[str, Any]]:
    return ev("content_block_delta", index=index, delta={"type": "text_delta", "text": text})


def json_delta(index: int, partial: str) -> tuple[str, dict[str, Any]]:
    delta = {"type": "input_json_delta", "partial_json": partial}
    return ev("content_block_delta", index=index, delta=delta)


def tool_start(index: int, tool_id: str, name: str) -> tuple[str, dict[str, Any]]:
    block = {"type": "tool_use", "id": tool_id, "name": name, "input": {}}
    return ev("content_block_start", index=index, content_block=block)


def text_start(index: int) -> tuple[str, dict[str, Any]]:
    return ev("content_block_start", index=index, content_block={"type": "text", "text": ""})


def message_delta(stop_reason: str | None, output_tokens: int) -> tuple[str, dict[str, Any]]:
    delta = {"stop_reason": stop_reason, "stop_sequence": None}
    return ev("message_delta", delta=delta, usage={"output_tokens": output_tokens})


TEXT_AND_TOOL_EVENTS = [
    message_start(),
    text_start(0),
    ev("ping"),
    text_delta(0, "Okay"),
    text_delta(0, ", let's check the weather."),
    ev("content_block_stop", index=0),
    tool_start(1, "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather"),
    json_delta(1, ""),
    json_delta(1, '{"location":'),
    json_delta(1, ' "San Francisco, CA"}'),
    ev("content_block_stop", index=1),
    message_delta("tool_use", 89),
    ev("message_stop"),
]


def run(
    events: list[tuple[str, dict[str, Any]]], *, include_usage: bool = True
) -> list[dict[str, Any]]:
    translator = StreamTranslator(model=PUBLIC, created=CREATED, include_usage=include_usage)
    chunks = [chunk for event, data in events for chunk in translator.feed(event, data)]
    assert translator.done
    return chunks + translator.finish()


def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{MESSAGE_ID}",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": PUBLIC,
        "system_fingerprint": None,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        "usage": None,
    }


def test_text_and_tool_stream_gives_openai_chunks() -> None:
    assert run(TEXT_AND_TOOL_EVENTS) == [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Okay"}),
        chunk({"content": ", let's check the weather."}),
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"location":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": ' "San Francisco, CA"}'}}]}),
        chunk({}, finish_reason="tool_calls"),
        {
            "id": f"chatcmpl-{MESSAGE_ID}",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": PUBLIC,
            "system_fingerprint": None,
            "choices": [],
            "usage": {"prompt_tokens": 472, "completion_tokens": 89, "total_tokens": 561},
        },
    ]


def test_without_include_usage_chunks_have_no_usage_key_and_finish_adds_nothing() -> None:
    chunks = run(TEXT_AND_TOOL_EVENTS, include_usage=False)
    assert len(chunks) == 7
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_tool_indexes_count_tool_blocks_only_and_empty_input_becomes_braces() -> None:
    events = [
        message_start(),
        text_start(0),
        text_delta(0, "Two lookups."),
        ev("content_block_stop", index=0),
        tool_start(1, "toolu_a", "now"),
        json_delta(1, ""),
        ev("content_block_stop", index=1),
        tool_start(2, "toolu_b", "get_weather"),
        json_delta(2, '{"location": "Lima"}'),
        ev("content_block_stop", index=2),
        message_delta("tool_use", 40),
        ev("message_stop"),
    ]
    calls = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in run(events, include_usage=False)
        if "tool_calls" in c["choices"][0]["delta"]
    ]
    assert calls == [
        {
            "index": 0,
            "id": "toolu_a",
            "type": "function",
            "function": {"name": "now", "arguments": ""},
        },
        {"index": 0, "function": {"arguments": "{}"}},
        {
            "index": 1,
            "id": "toolu_b",
            "type": "function",
            "function": {"name": "get_weather", "arguments": ""},
        },
        {"index": 1, "function": {"arguments": '{"location": "Lima"}'}},
    ]


def test_thinking_blocks_and_unknown_events_yield_nothing() -> None:
    events = [
        message_start(),
        ev("content_block_start", index=0, content_block={"type": "thinking", "thinking": ""}),
        ev("content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": "Hmm."}),
        ev("content_block_delta", index=0, delta={"type": "signature_delta", "signature": "Eq"}),
        ev("content_block_stop", index=0),
        ev("some_future_event", payload=1),
        text_start(1),
        text_delta(1, "Answer."),
        ev("content_block_stop", index=1),
        message_delta("end_turn", 30),
        ev("message_stop"),
    ]
    chunks = run(events, include_usage=False)
    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"role": "assistant", "content": ""},
        {"content": "Answer."},
        {},
    ]


def test_message_stop_without_stop_reason_still_finishes() -> None:
    events = [message_start(), text_start(0), text_delta(0, "Hi"), message_delta(None, 3)]
    events.append(ev("message_stop"))
    chunks = run(events, include_usage=False)
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }


def test_message_delta_usage_replaces_start_counts() -> None:
    events = [
        message_start(input_tokens=10, cache_read_input_tokens=90, output_tokens=1),
        text_start(0),
        text_delta(0, "Hi"),
        ev(
            "message_delta",
            delta={"stop_reason": "end_turn", "stop_sequence": None},
            usage={"input_tokens": 10, "cache_read_input_tokens": 90, "output_tokens": 7},
        ),
        ev("message_stop"),
    ]
    assert run(events)[-1]["usage"] == {
        "prompt_tokens": 100,
        "completion_tokens": 7,
        "total_tokens": 107,
        "prompt_tokens_details": {"cached_tokens": 90},
    }


def test_error_event_raises_upstream_stream_error() -> None:
    translator = StreamTranslator(model=PUBLIC, created=CREATED, include_usage=False)
    translator.feed(*message_start())
    translator.feed(*text_start(0))
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    with pytest.raises(UpstreamStreamError) as info:
        translator.feed("error", error)
    assert (info.value.type, info.value.message) == ("overloaded_error", "Overloaded")
    assert isinstance(info.value, UpstreamError)
    assert not translator.done


@pytest.mark.parametrize("data", [{"type": "error"}, {"type": "error", "error": "boom"}])
def test_error_event_without_details_is_an_api_error(data: dict[str, Any]) -> None:
    translator = StreamTranslator(model=PUBLIC, created=CREATED, include_usage=False)
    with pytest.raises(UpstreamStreamError) as info:
        translator.feed("error", data)
    assert info.value.type == "api_error"
    assert "stream error event" in info.value.message


def test_finish_before_message_stop_raises_and_done_tracks_message_stop() -> None:
    translator = StreamTranslator(model=PUBLIC, created=CREATED, include_usage=True)
    for event, data in TEXT_AND_TOOL_EVENTS[:-1]:
        translator.feed(event, data)
    done_before_stop = translator.done
    with pytest.raises(UpstreamStreamCutError, match="before message_stop"):
        translator.finish()
    translator.feed(*TEXT_AND_TOOL_EVENTS[-1])
    assert (done_before_stop, translator.done) == (False, True)
    assert len(translator.finish()) == 1
    assert translator.finish() == []
    assert translator.feed(*text_delta(0, "late")) == []


@pytest.mark.parametrize(
    "events",
    [
        [text_start(0)],
        [message_start(), message_start()],
        [ev("message_start", message={"type": "message"})],
        [message_start(), ev("content_block_start", index=0)],
        [message_start(), ev("content_block_delta", delta={"type": "text_delta", "text": "x"})],
        [
            message_start(),
            text_start(0),
            ev("content_block_delta", index=0, delta={"type": "text_delta"}),
        ],
        [message_start(), ev("content_block_start", index=0, content_block={"type": "tool_use"})],
        [message_start(), ev("content_block_delta", index=0)],
        [
            message_start(),
            tool_start(0, "toolu_1", "f"),
            ev("content_block_delta", index=0, delta={"type": "input_json_delta"}),
        ],
    ],
)
def test_malformed_or_misplaced_events_raise_upstream_protocol_error(
    events: list[tuple[str, dict[str, Any]]],
) -> None:
    translator = StreamTranslator(model=PUBLIC, created=CREATED, include_usage=False)
    for event, data in events[:-1]:
        translator.feed(event, data)
    with pytest.raises(UpstreamProtocolError):
        translator.feed(*events[-1])


# --- streaming and non-streaming agree -----------------------------------------------


def pieces(text: str, size: int) -> Iterator[str]:
    for start in range(0, len(text), size):
        yield text[start : start + size]


def as_events(response: Mapping[str, Any], size: int) -> list[tuple[str, dict[str, Any]]]:
    """How Anthropic would stream ``response``, its text and JSON cut every ``size`` chars."""
    usage = response["usage"]
    start_usage = {k: v for k, v in usage.items() if k != "output_tokens"}
    events = [message_start(**start_usage, output_tokens=1)]
    for index, block in enumerate(response["content"]):
        if block["type"] == "text":
            events.append(text_start(index))
            events += [text_delta(index, part) for part in pieces(block["text"], size)]
        else:
            events.append(tool_start(index, block["id"], block["name"]))
            arguments = orjson.dumps(block["input"], option=orjson.OPT_INDENT_2).decode()
            events.append(json_delta(index, ""))
            if block["input"]:
                events += [json_delta(index, part) for part in pieces(arguments, size)]
        events.append(ev("content_block_stop", index=index))
    events.append(message_delta(response["stop_reason"], usage["output_tokens"]))
    events.append(ev("message_stop"))
    return events


def accumulate(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """Rebuild a message from chunks the way OpenAI's client libraries do."""
    content: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    finish: str | None = None
    usage: dict[str, Any] | None = None
    for c in chunks:
        if c.get("usage"):
            usage = c["usage"]
        for choice in c["choices"]:
            delta = choice["delta"]
            content.append(delta.get("content") or "")
            for call in delta.get("tool_calls", []):
                entry = calls.setdefault(call["index"], {"arguments": ""})
                entry.update({k: call[k] for k in ("id",) if k in call})
                entry.update({k: v for k, v in call["function"].items() if k == "name"})
                entry["arguments"] += call["function"]["arguments"]
            finish = choice["finish_reason"] or finish
    return {"content": "".join(content), "calls": calls, "finish": finish, "usage": usage}


ANSWERS = [
    anthropic_response([{"type": "text", "text": "Paris is the capital of France. 🇫🇷"}]),
    anthropic_response([], stop_reason="end_turn"),
    anthropic_response(
        [{"type": "text", "text": "Once upon a time, there was a"}],
        stop_reason="max_tokens",
        usage={"input_tokens": 9, "output_tokens": 8, "cache_read_input_tokens": 0},
    ),
    anthropic_response(
        [
            {"type": "text", "text": "I'll look both up."},
            {"type": "tool_use", "id": "toolu_1", "name": "now", "input": {}},
            {
                "type": "tool_use",
                "id": "toolu_2",
                "name": "search",
                "input": {"query": 'weather "Paris"', "filters": {"days": [1, 2]}, "n": 3},
            },
        ],
        stop_reason="tool_use",
        usage={
            "input_tokens": 50,
            "cache_creation_input_tokens": 400,
            "cache_read_input_tokens": 1200,
            "output_tokens": 70,
        },
    ),
]


@pytest.mark.parametrize("response", ANSWERS)
@pytest.mark.parametrize("size", [1, 7, 1000])
def test_streamed_answer_accumulates_to_the_non_streamed_one(
    response: dict[str, Any], size: int
) -> None:
    whole = messages_to_chat(response, model=PUBLIC, created=CREATED)
    chunks = run(as_events(response, size))
    streamed = accumulate(chunks)
    message = whole["choices"][0]["message"]
    assert {c["id"] for c in chunks} == {whole["id"]}
    assert streamed["content"] == (message["content"] or "")
    assert streamed["finish"] == whole["choices"][0]["finish_reason"]
    assert streamed["usage"] == whole["usage"]
    calls = [streamed["calls"][i] for i in sorted(streamed["calls"])]
    expected = message.get("tool_calls", [])
    assert [(c["id"], c["name"]) for c in calls] == [
        (c["id"], c["function"]["name"]) for c in expected
    ]
    assert [orjson.loads(c["arguments"]) for c in calls] == [
        orjson.loads(c["function"]["arguments"]) for c in expected
    ]


# --- anthropic_error_to_openai -------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind", "openai_type", "code"),
    [
        (400, "invalid_request_error", "invalid_request_error", None),
        (401, "authentication_error", "authentication_error", None),
        (402, "billing_error", "insufficient_quota", "insufficient_quota"),
        (403, "permission_error", "permission_error", None),
        (404, "not_found_error", "not_found_error", None),
        (413, "request_too_large", "invalid_request_error", "request_too_large"),
        (429, "rate_limit_error", "rate_limit_error", "rate_limit_exceeded"),
        (500, "api_error", "server_error", None),
        (504, "timeout_error", "server_error", "timeout"),
        (529, "overloaded_error", "server_error", "overloaded"),
    ],
)
def test_anthropic_error_types_map(
    status: int, kind: str, openai_type: str, code: str | None
) -> None:
    body = {
        "type": "error",
        "error": {"type": kind, "message": "Something specific."},
        "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy",
    }
    assert anthropic_error_to_openai(status, body) == {
        "error": {
            "message": "Something specific.",
            "type": openai_type,
            "param": None,
            "code": code,
        }
    }


@pytest.mark.parametrize(
    ("status", "body", "message", "openai_type"),
    [
        (502, None, "upstream returned HTTP 502", "server_error"),
        (429, None, "upstream returned HTTP 429", "rate_limit_error"),
        (418, {}, "upstream returned HTTP 418", "invalid_request_error"),
        (503, {"error": "Service Unavailable"}, "Service Unavailable", "server_error"),
        (400, {"message": "bad"}, "bad", "invalid_request_error"),
        (529, {"error": {"type": "brand_new_error", "message": "m"}}, "m", "server_error"),
        (
            401,
            {"error": {"type": 5, "message": None}},
            "upstream returned HTTP 401",
            "authentication_error",
        ),
    ],
)
def test_odd_error_bodies_fall_back_on_the_status(
    status: int, body: dict[str, Any] | None, message: str, openai_type: str
) -> None:
    error = anthropic_error_to_openai(status, body)["error"]
    assert (error["message"], error["type"], error["param"]) == (message, openai_type, None)
