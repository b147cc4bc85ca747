"""The PMO process library (.bpmn, .dmn), shipped as package data."""
