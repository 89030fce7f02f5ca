"""The Salesforce REST API emulator: `api` (OAuth, routes, limits), `composite` (sObject
Collections requests), `org` (records, ids, field rules, DML results), `soql` (the query subset)."""

from revetl.emulators.salesforce.api import SalesforceEmulator

__all__ = ["SalesforceEmulator"]
