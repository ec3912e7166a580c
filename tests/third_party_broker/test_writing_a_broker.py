"""docs/plugins.md, "Writing a broker", followed literally by a broker outside
Taskmaster's packages (my_broker.py, a wrapper around the memory broker).

The guide's test module is taken from the guide itself and run, in its own
pytest process, next to my_broker.py: the whole shipped contract suite must
pass, with nothing skipped. Two more runs check what the guide says about a
missing ``make_harness``, and about options and capabilities a broker lacks.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
GUIDE = HERE.parents[1] / "docs" / "plugins.md"
CONTRACT_TESTS = 94  # each class of tests/contract/test_brokers.py runs as many
KEEP_DONE_TESTS = 4  # the contract tests that build a broker with keep_done=True
WAKE_UP_TESTS = 6  # the contract tests of Capability.WAKE_UPS
PAUSE_TESTS = 12  # the contract tests of Capability.PAUSE


def guide_test_module() -> str:
    """The ```python block of "Writing a broker" that is ``test_my_broker.py``."""
    text = GUIDE.read_text(encoding="utf-8")
    section = text.split("## Writing a broker", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```python\n(.*?)^```", section, re.S | re.M)
    (module,) = [block for block in blocks if block.startswith("# test_my_broker.py\n")]
    return module


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A directory of the third party's own: its broker and the guide's test module."""
    pytester.makepyfile(my_broker=(HERE / "my_broker.py").read_text(encoding="utf-8"))
    pytester.makepyfile(test_my_broker=guide_test_module())
    return pytester


def test_the_guide_runs_the_whole_contract_suite_on_a_third_party_broker(
    project: pytest.Pytester,
) -> None:
    result = project.runpytest_subprocess("-W", "error", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=CONTRACT_TESTS)
    result.stdout.fnmatch_lines(["*test_my_broker.py*"])


def test_a_contract_class_without_make_harness_says_what_to_define(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_forgot="""
        from taskmaster_core.testing import BrokerContract

        class TestForgot(BrokerContract):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-k", "test_put_with_nothing_is_a_no_op")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*TestForgot must define a make_harness fixture*"])


def test_options_and_capabilities_a_broker_lacks_skip_their_tests(
    project: pytest.Pytester,
) -> None:
    project.makeconftest(
        """
        import pytest
        import my_broker

        class Plainer(my_broker.MyBroker):
            capabilities = frozenset()  # no wake-ups: consumers poll

            def __init__(self, *, clock, **options):
                if options:
                    pytest.skip(f"MyBroker has no {', '.join(options)} option")
                super().__init__(clock=clock)

        my_broker.MyBroker = Plainer
        """
    )
    result = project.runpytest_subprocess("-rs", "-p", "no:cacheprovider")
    skipped = KEEP_DONE_TESTS + WAKE_UP_TESTS + PAUSE_TESTS
    result.assert_outcomes(passed=CONTRACT_TESTS - skipped, skipped=skipped)
    result.stdout.fnmatch_lines(
        [f"*SKIPPED [[]{KEEP_DONE_TESTS}] *: MyBroker has no keep_done option"]
    )
    result.stdout.fnmatch_lines(
        [f"*SKIPPED [[]{WAKE_UP_TESTS}] *: Plainer does not declare Capability.WAKE_UPS"]
    )
    result.stdout.fnmatch_lines(
        [f"*SKIPPED [[]{PAUSE_TESTS}] *: Plainer does not declare Capability.PAUSE"]
    )


def test_a_consumer_killed_by_the_broker_fails_its_test_at_once_naming_the_error(
    project: pytest.Pytester,
) -> None:
    """A broker raising something unexpected kills the consumer; the suite
    says so at once instead of waiting out its timeout."""
    project.makeconftest(
        """
        import my_broker

        class Broken(my_broker.MyBroker):
            def settle(self, settlements):
                raise TypeError("settle got confused")

        my_broker.MyBroker = Broken
        """
    )
    result = project.runpytest_subprocess(
        "-p", "no:cacheprovider", "-k", "test_every_job_is_handled_exactly_once_with_many_workers"
    )
    result.assert_outcomes(failed=2)  # with a sync and with an async handler
    result.stdout.fnmatch_lines(["*died of TypeError('settle got confused')*"] * 2)
    assert result.duration < 20, f"took {result.duration:.0f}s: it waited out the timeout"
