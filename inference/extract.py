"""Chemicals, diseases and chemical -> disease relations of abstracts, with a trained run.

    Extractor("runs/<dir>").extract(["abstract one", "abstract two"])
    -> [{"chemicals": [...], "diseases": [...], "relations": [{"chemical", "disease"}, ...],
         "format_errors": [{"task", "problem", "line"?}, ...]}, ...]

Every abstract is asked the three task prompts of preprocessing.task, wrapped in chat messages
with the run's system prompt exactly as in training; all prompts of one extract() call go through
one greedy decode (inference.decode), and the answers are parsed with the shared task module.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inference.decode import Generation, generate_greedy
from inference.load import load_model
from inference.run import (
    ModelSource,
    RunError,
    encode_chats,
    load_tokenizer,
    source_of_run,
    stop_token_ids,
    system_prompt_of,
)
from inference.startup import keep_out_unused
from preprocessing.task import TASKS, build_prompt, parse_items, parse_relation

# BC5CDR answers are at most a few hundred tokens; a model that never stops is cut here.
DEFAULT_MAX_NEW_TOKENS = 512
# Texts whose prompt token ids are kept for reuse (a service's batches are far smaller).
RECENT_PROMPTS = 1024
_KEYS = {"chemical": "chemicals", "disease": "diseases"}


def _unique(items: list[Any]) -> list[Any]:
    """Duplicates collapse, as in scoring; first occurrence order is kept."""
    return list(dict.fromkeys(items))


def parse_answers(answers: dict[str, Generation]) -> dict[str, Any]:
    """The three generations of one abstract -> the JSON result."""
    result: dict[str, Any] = {"chemicals": [], "diseases": [], "relations": [], "format_errors": []}
    for task in TASKS:
        answer = answers[task]
        if answer.finish_reason == "length":
            result["format_errors"].append(
                {"task": task, "problem": "no end of answer within max_new_tokens: cut off"}
            )
        items = parse_items(answer.text)
        if task != "relation":
            result[_KEYS[task]] = _unique(items)
            continue
        pairs = []
        for item in items:
            pair = parse_relation(item)
            if pair is None:
                result["format_errors"].append(
                    {"task": task, "problem": "not 'Chemical X influences disease Y'", "line": item}
                )
            else:
                pairs.append(pair)
        result["relations"] = [{"chemical": c, "disease": d} for c, d in _unique(pairs)]
    return result


def context_length(model: Any, tokenizer: Any) -> int:
    """Tokens the model takes in all (its config's max_position_embeddings)."""
    config = model.config.get_text_config()
    length = getattr(config, "max_position_embeddings", None)
    return int(length or tokenizer.model_max_length)


class Extractor:
    """A run's model, loaded once; `extract(texts)` answers the three tasks for each text."""

    def __init__(
        self,
        run_dir: str | Path,
        merged: bool = False,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        engine: str = "auto",
    ) -> None:
        if max_new_tokens < 1:
            raise RunError("max_new_tokens must be at least 1")
        run_dir = Path(run_dir)
        self.source: ModelSource = source_of_run(run_dir, merged)
        keep_out_unused(self.source.model, engine)  # only in a command's own process
        # run.json's system prompt is what training used (None: the template had none).
        self.system_prompt = system_prompt_of(run_dir)
        self.tokenizer = load_tokenizer(self.source)  # the run's own chat template
        self.model = load_model(self.source.model, self.source.adapter, self.tokenizer)
        self.stops = stop_token_ids(self.tokenizer, self.model.generation_config)
        self.max_new_tokens = max_new_tokens
        self.engine = engine
        # The longest prompt that leaves room for a whole answer.
        self.max_prompt_tokens = context_length(self.model, self.tokenizer) - max_new_tokens
        self.last_stats: dict[str, Any] = {}  # the last extract() call's decoding stats
        # The token ids of the texts seen last (the service's request threads and its decode
        # thread both read and write them).
        self._recent_prompts: OrderedDict[str, list[list[int]]] = OrderedDict()
        self._prompt_lock = threading.Lock()

    @property
    def target(self) -> ModelSource:
        """The model source (run, model, adapter): the name earlier callers used."""
        return self.source

    def messages(self, task: str, text: str) -> list[dict[str, str]]:
        turns = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        # Abstracts are stored stripped in the training rows; a pasted one often is not.
        return [*turns, {"role": "user", "content": build_prompt(task, text.strip())}]

    def prompts(self, texts: list[str]) -> list[list[int]]:
        """Token ids of every text's three prompts, text by text in TASKS order. The service
        measures a request's prompts before it joins a batch; the batch reuses them."""
        with self._prompt_lock:
            known = {text: self._recent_prompts.get(text) for text in texts}
        new = list(dict.fromkeys(text for text, prompts in known.items() if prompts is None))
        ids = encode_chats(self.tokenizer, [self.messages(t, x) for x in new for t in TASKS])
        count = len(TASKS)
        for number, text in enumerate(new):
            known[text] = ids[number * count : (number + 1) * count]
        with self._prompt_lock:
            for text in texts:
                self._recent_prompts[text] = known[text]
                self._recent_prompts.move_to_end(text)
            while len(self._recent_prompts) > RECENT_PROMPTS:
                self._recent_prompts.popitem(last=False)
        return [prompt for text in texts for prompt in known[text]]

    def prompt_tokens(self, text: str) -> int:
        """The longest of the three task prompts for this text, in tokens."""
        return max(map(len, self.prompts([text])))

    def extract(
        self, texts: list[str], on_result: Callable[[int, dict[str, Any]], None] | None = None
    ) -> list[dict[str, Any]]:
        """Chemicals, diseases, relations and format errors for each text, in input order.
        on_result(index, result), if given, is called as each text's three answers are done
        (in the order they finish), so a caller can write results while others decode."""
        for number, text in enumerate(texts, start=1):
            if not isinstance(text, str) or not text.strip():
                raise RunError(f"text {number}: expected a non-empty string")
        if not texts:
            return []
        prompts = self.prompts(texts)
        for number, start in enumerate(range(0, len(prompts), len(TASKS)), start=1):
            longest = max(map(len, prompts[start : start + len(TASKS)]))
            if longest > self.max_prompt_tokens:
                raise RunError(
                    f"text {number}: its prompt is {longest} tokens; at most "
                    f"{self.max_prompt_tokens} leave room for a {self.max_new_tokens}-token answer"
                )
        answers: dict[int, dict[str, Generation]] = {}

        def on_done(index: int, generation: Generation) -> None:
            text, task = divmod(index, len(TASKS))
            answers.setdefault(text, {})[TASKS[task]] = generation
            if on_result is not None and len(answers[text]) == len(TASKS):
                on_result(text, parse_answers(answers.pop(text)))

        # All prompts of the call in one decode: one batch for every extract() call.
        generations, self.last_stats = generate_greedy(
            self.model, self.tokenizer, prompts, self.max_new_tokens, self.stops,
            batch_size=len(prompts), engine=self.engine, on_done=on_done if on_result else None,
        )  # fmt: skip
        per_text = [generations[i : i + len(TASKS)] for i in range(0, len(generations), len(TASKS))]
        return [parse_answers(dict(zip(TASKS, answers, strict=True))) for answers in per_text]
