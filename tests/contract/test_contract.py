"""The built-in destinations pass the contract suite, as a third-party plugin runs it (revetl.testing)."""

from __future__ import annotations

from cases import BRAZE, INTERCOM, SALESFORCE

from revetl.testing import contract_tests

TestBraze = contract_tests(BRAZE)
TestIntercom = contract_tests(INTERCOM)
TestSalesforce = contract_tests(SALESFORCE)
