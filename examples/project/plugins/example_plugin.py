"""A tiny plugin so the plugins/ folder is real: it adds one macro, `{{ macros.example_astro_plugin.project() }}`."""

from airflow.plugins_manager import AirflowPlugin


def project() -> str:
    return "example_astro"


class ExampleAstroPlugin(AirflowPlugin):
    name = "example_astro_plugin"
    macros = [project]
