"""The GRPO rewards, as tables of completions and the scores they must get."""

import pytest
from lgt.answers import parse_answer
from lgt.rewards import accuracy_reward, format_reward

OPTIONS = ["red", "blue", "green", "a red car"]

ACCURACY = [  # completion text, gold letter, reward
    ("<think>The car is blue.</think> <answer>(B)</answer>", "B", 1.0),
    ("<think>x</think> <answer>B.</answer>", "B", 1.0),
    ("<think>x</think> <answer>B</answer>", "B", 1.0),
    ("<think>x</think> <answer>(B) blue</answer>", "B", 1.0),
    ("<think>x</think> <answer> Blue. </answer>", "B", 1.0),
    ("<think>x</think> <answer>(C)</answer>", "B", 0.0),
    ("<think>x</think> <answer>(B) green</answer>", "B", 0.0),  # contradicts itself
    ("<think>x</think> <answer>(E)</answer>", "B", 0.0),  # names no option
    ("<think>x</think> <answer>purple</answer>", "B", 0.0),
    ("<think>x</think> <answer></answer>", "B", 0.0),
    ("The answer is (B).", "B", 0.0),  # no answer tag
    ("<answer>(A)</answer> wait <answer>(B)</answer>", "B", 1.0),  # the last answer counts
    ("<answer>(B)</answer> wait <answer>(A)</answer>", "B", 0.0),
    ("<think>x</think> <answer>red</answer>", "A", 1.0),  # "red" is one option's whole text, not "a red car"
    ("<think>x</think> <answer>a red car</answer>", "D", 1.0),
    ("<think>x</think> <answer>blue green</answer>", "B", 0.0),  # not any option's text
]

FORMAT = [  # completion text, reward
    ("<think>reasoning</think> <answer>(B)</answer>", 1.0),
    ("<think>reasoning</think><answer>(B)</answer>", 1.0),
    ("\n<think>\nline one\nline two\n</think>\n<answer>B.</answer>\n", 1.0),
    ("<think>reasoning</think>", 0.0),
    ("<answer>(B)</answer>", 0.0),
    ("<answer>(B)</answer><think>reasoning</think>", 0.0),
    ("<think> </think> <answer>(B)</answer>", 0.0),  # empty reasoning
    ("<think>reasoning</think> <answer> </answer>", 0.0),  # empty answer
    ("So: <think>reasoning</think> <answer>(B)</answer>", 0.0),  # text outside the blocks
    ("<think>reasoning</think> <answer>(B)</answer> done", 0.0),
    ("<think>a</think> <answer>(A)</answer> <answer>(B)</answer>", 0.0),  # two answers
    ("<think>a <think>b</think> <answer>(B)</answer>", 0.0),  # nested tag
    ("<think>a</think> <think>b</think> <answer>(B)</answer>", 0.0),
    ("", 0.0),
]


def _conversational(text):
    return [{"role": "assistant", "content": text}]


@pytest.mark.parametrize(("text", "gold", "reward"), ACCURACY)
def test_accuracy_reward(text, gold, reward):
    for completion in (_conversational(text), text):
        assert accuracy_reward([completion], answer=[gold], options=[OPTIONS], solution=["ignored"]) == [reward]


def test_accuracy_agrees_with_the_parser():
    """The reward is the builder's grading, not a second opinion: 1.0 exactly when parse_answer gives the gold."""
    completions = [_conversational(text) for text, _, _ in ACCURACY]
    golds = [gold for _, gold, _ in ACCURACY]
    rewards = accuracy_reward(completions, answer=golds, options=[OPTIONS] * len(golds))
    assert rewards == [float(parse_answer(text, OPTIONS) == gold) for text, gold, _ in ACCURACY]
    assert 0.0 in rewards and 1.0 in rewards


@pytest.mark.parametrize(("text", "reward"), FORMAT)
def test_format_reward(text, reward):
    for completion in (_conversational(text), text):
        assert format_reward([completion], answer=["A"]) == [reward]


def test_rewards_score_each_completion_of_a_batch():
    texts = [ACCURACY[0][0], ACCURACY[5][0], FORMAT[3][0]]
    completions = [_conversational(text) for text in texts]
    assert accuracy_reward(completions, answer=["B", "B", "B"], options=[OPTIONS] * 3) == [1.0, 0.0, 0.0]
    assert format_reward(completions) == [1.0, 1.0, 0.0]
    with pytest.raises(ValueError):
        accuracy_reward(completions, answer=["B"], options=[OPTIONS])
