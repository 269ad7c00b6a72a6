"""The peer, side by side: backtrack-sampler (the `bench` extra) rolling back one token at 10% of steps,
against our engine deleting at the same rate through a logit bias on its delete token."""
import time

import llama_cpp
import torch
from backtrack_sampler import BacktrackSampler
from backtrack_sampler.provider.llamacpp_provider import LlamacppProvider
from backtrack_sampler.strategy.base_strategy import BaseStrategy

EVERY = 10  # one rollback every 10 steps: 10% of steps


class EveryTenthStep(BaseStrategy):
    """ReplaceStrategy's shape with a fixed rule: at every 10th step, take the newest token back. The end
    token is banned, as our side's bias bans it, so both write the same number of tokens."""

    def __init__(self, eos: int) -> None:
        self.eos = eos
        self.steps = self.rollbacks = 0  # for the whole run: BacktrackSampler calls reset() as it ends

    def get_keep_index(self) -> int:
        return 0  # nothing is released before the end: a rollback may come at any step

    def on_logits(self, logits: torch.FloatTensor, continuation_tokens: list[int]) -> torch.FloatTensor:
        logits[:, self.eos] = -float("inf")
        return logits

    def on_probs(self, probs: torch.FloatTensor, continuation_tokens: list[int]) -> torch.FloatTensor:
        return probs

    def on_next_token(self, continuation_tokens: list[int], probs: torch.FloatTensor) -> None:
        self.steps += 1

    def backtrack(self, continuation_tokens: list[int]) -> list[int]:
        if self.steps % EVERY == 0:
            self.rollbacks += 1
            return continuation_tokens[:-1]
        return continuation_tokens

    def reset(self) -> None:
        pass


class LastRowProvider(LlamacppProvider):
    """The stock provider, except that it reads only the newest row of logits: the stock one converts every
    row so far to Python lists at each step (Llama.eval_logits), a cost that grows with the reply and
    would measure that conversion rather than the rollback (bench/NOTES.md). It also notes when the
    prompt's decode ends, which the rates leave out, as ours do."""

    def generate(self, input_ids: list[int], *args, **kwargs) -> torch.Tensor:
        new_tokens = input_ids[self._evaluated_tokens:]
        if new_tokens:
            self.llm.eval(new_tokens)
            self._evaluated_tokens = len(input_ids)
        if self.prompt_done is None:
            self.prompt_done = time.perf_counter()
        return torch.from_numpy(self.llm.scores[self.llm.n_tokens - 1].copy()).unsqueeze(0)


class Peer:
    def __init__(self, path, threads: int, flash_attn: bool) -> None:
        torch.set_num_threads(threads)
        self.llm = llama_cpp.Llama(str(path), n_ctx=2048, n_threads=threads, n_threads_batch=threads,
                                   logits_all=True, flash_attn=flash_attn, verbose=False)
        self.provider = LastRowProvider(self.llm, llama_cpp.LlamaRAMCache(capacity_bytes=1 << 20))

    def run(self, prompt: str, tokens: int, settings: dict) -> tuple[float, float]:
        """(the share of steps that were rollbacks, final tokens per second after the prompt)."""
        strategy = EveryTenthStep(self.llm.token_eos())
        sampler = BacktrackSampler(self.provider, strategy)
        self.provider.prompt_done = None
        torch.manual_seed(1)
        final = list(sampler.generate(prompt, max_new_tokens=tokens, temperature=settings["temp"],
                                      top_k=settings["top_k"], top_p=settings["top_p"], min_p=settings["min_p"]))
        elapsed = time.perf_counter() - self.provider.prompt_done
        return strategy.rollbacks / strategy.steps, len(final) / elapsed
