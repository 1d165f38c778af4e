"""Security tests (issue 8): each module is one area; each test is named as a sentence
saying what must hold, and was written to fail against the behaviour before its fix."""
