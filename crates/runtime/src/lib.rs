//! The runtime inside the images: init, privilege step-down, readiness and Airflow start-up.
