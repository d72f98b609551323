"""`sda serve`: a SigOpt-compatible REST API (the Core API and AI Experiment API routes the sigopt 8.x client
uses) on the local engine and its storage, so existing SigOpt client code keeps working offline."""

from sda.serve.app import create_app

__all__ = ["create_app"]
