"""The operator's view in Airflow: sync health, quarantine and the initial migration's reports, with actions.

:mod:`~starmamut.operator_view.model` decides what is shown and what an action does (staging store and config
only); :mod:`~starmamut.operator_view.app` is the FastAPI app that ``plugins/starmamut_plugin.py`` mounts in
Airflow's API server, with Airflow's auth manager deciding who may see and act.
"""
