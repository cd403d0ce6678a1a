//! The AWS-side backstop on EventBridge Scheduler (`aws.backstop = "scheduler"`): one
//! one-time schedule per assignment, in `aws.backstop_schedule_group`, whose target is the
//! universal target for `sso-admin:DeleteAccountAssignment` with the assignment's
//! instance, account, permission set and principal, run as `aws.backstop_role_arn`, and
//! deleted by Scheduler once it has run (`ActionAfterCompletion = DELETE`).
//!
//! One schedule per assignment, not per grant: grants that share an assignment share its
//! schedule, which fires after the latest end among them (the worker moves it), so the
//! backstop never cuts a grant that is still live.

use super::{classify, sdk_config};
use crate::config::{AwsConfig, BackstopSettings};
use crate::provisioner::{Assignment, Backstop, ProvisionError, SCHEDULE_PREFIX as NAME_PREFIX};
use async_trait::async_trait;
use aws_sdk_scheduler::error::ProvideErrorMetadata;
use aws_sdk_scheduler::types::{
    ActionAfterCompletion, FlexibleTimeWindow, FlexibleTimeWindowMode, ScheduleState, Target,
};

/// The universal target that deletes an account assignment.
pub const DELETE_TARGET: &str = "arn:aws:scheduler:::aws-sdk:ssoadmin:deleteAccountAssignment";

pub struct SchedulerBackstop {
    client: aws_sdk_scheduler::Client,
    iam: aws_sdk_iam::Client,
    instance_arn: String,
    settings: BackstopSettings,
}

impl SchedulerBackstop {
    pub async fn connect(
        config: &AwsConfig,
        settings: BackstopSettings,
        instance_arn: &str,
    ) -> Self {
        let sdk = sdk_config(config).await;
        Self {
            client: aws_sdk_scheduler::Client::new(&sdk),
            iam: aws_sdk_iam::Client::new(&sdk),
            instance_arn: instance_arn.to_owned(),
            settings,
        }
    }

    pub fn group(&self) -> &str {
        &self.settings.group
    }

    /// The schedule group exists (`portcullis check-config`, start-up).
    pub async fn check_group(&self) -> Result<(), ProvisionError> {
        self.client
            .get_schedule_group()
            .name(&self.settings.group)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("GetScheduleGroup", e))
    }

    /// The role schedules run as exists (`portcullis check-config`): Scheduler itself
    /// accepts any well-formed ARN, and a schedule run as a missing role fails only when it
    /// fires, which is when it matters.
    pub async fn check_role(&self) -> Result<(), ProvisionError> {
        let arn = &self.settings.role_arn;
        let name = arn
            .split_once(":role/")
            .and_then(|(_, path)| path.rsplit('/').next())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                ProvisionError::Permanent(format!(
                    "{arn:?} is not a role ARN (arn:aws:iam::<account>:role/<name>)"
                ))
            })?;
        match self.iam.get_role().role_name(name).send().await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("NoSuchEntity") => Err(ProvisionError::Permanent(format!(
                "the role {arn} does not exist"
            ))),
            Err(e) => Err(classify("GetRole", e)),
        }
    }

    /// The names of the portal's schedules in the group (reconciliation).
    async fn list_names(&self) -> Result<Vec<String>, ProvisionError> {
        let mut names = Vec::new();
        let mut next: Option<String> = None;
        // Bounded: 1,000 pages of 100 schedules.
        for _ in 0..1000 {
            let page = self
                .client
                .list_schedules()
                .group_name(&self.settings.group)
                .name_prefix(NAME_PREFIX)
                .max_results(100)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| classify("ListSchedules", e))?;
            names.extend(
                page.schedules()
                    .iter()
                    .filter_map(|s| s.name())
                    .filter(|n| n.starts_with(NAME_PREFIX))
                    .map(str::to_owned),
            );
            match page.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_owned()),
                _ => return Ok(names),
            }
        }
        Err(ProvisionError::Permanent(
            "more than 100,000 schedules in the group".into(),
        ))
    }

    /// What the schedule asks SSO Admin to do, as the JSON input of its target.
    pub fn input(&self, a: &Assignment) -> Result<String, ProvisionError> {
        let principal = a.principal_id.as_deref().ok_or_else(|| {
            ProvisionError::Permanent("the assignment's principal is not known yet".into())
        })?;
        Ok(serde_json::json!({
            "InstanceArn": self.instance_arn,
            "TargetId": a.account_id,
            "TargetType": "AWS_ACCOUNT",
            "PermissionSetArn": a.permission_set_arn,
            "PrincipalType": "USER",
            "PrincipalId": principal,
        })
        .to_string())
    }

    fn target(&self, a: &Assignment) -> Result<Target, ProvisionError> {
        Target::builder()
            .arn(DELETE_TARGET)
            .role_arn(&self.settings.role_arn)
            .input(self.input(a)?)
            .build()
            .map_err(|e| ProvisionError::Permanent(e.to_string()))
    }
}

/// `at(2026-12-02T10:15:00)` in UTC, rounded up to the next whole second.
pub fn at_expression(epoch_ms: i64) -> String {
    let secs = epoch_ms.div_euclid(1000) + i64::from(epoch_ms.rem_euclid(1000) > 0);
    let t = aws_smithy_types::DateTime::from_secs(secs);
    let s = t
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_default();
    format!("at({})", s.trim_end_matches('Z'))
}

#[async_trait]
impl Backstop for SchedulerBackstop {
    async fn arm(&self, a: &Assignment, at: i64) -> Result<(), ProvisionError> {
        let name = self.schedule_name(a);
        let window = FlexibleTimeWindow::builder()
            .mode(FlexibleTimeWindowMode::Off)
            .build()
            .map_err(|e| ProvisionError::Permanent(e.to_string()))?;
        let description = format!(
            "Portcullis backstop: deletes {} in {} after its grants end",
            a.permission_set_arn, a.account_id
        );
        let target = self.target(a)?;
        // The whole definition, the same for a new schedule and for one moved.
        macro_rules! definition {
            ($call:expr) => {
                $call
                    .name(&name)
                    .group_name(&self.settings.group)
                    .schedule_expression(at_expression(at))
                    .schedule_expression_timezone("UTC")
                    .flexible_time_window(window.clone())
                    .target(target.clone())
                    .action_after_completion(ActionAfterCompletion::Delete)
                    .state(ScheduleState::Enabled)
                    .description(&description)
                    .send()
                    .await
            };
        }
        match definition!(self.client.create_schedule()) {
            Ok(_) => Ok(()),
            // There already (an earlier attempt, or another grant on the assignment): moved
            // to this time, the whole definition again.
            Err(e) if e.code() == Some("ConflictException") => {
                definition!(self.client.update_schedule())
                    .map(|_| ())
                    .map_err(|e| classify("UpdateSchedule", e))
            }
            Err(e) => Err(classify("CreateSchedule", e)),
        }
    }

    async fn remove(&self, name: &str) -> Result<(), ProvisionError> {
        match self
            .client
            .delete_schedule()
            .name(name)
            .group_name(&self.settings.group)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(()),
            Err(e) => Err(classify("DeleteSchedule", e)),
        }
    }

    async fn schedule_names(&self) -> Result<Vec<String>, ProvisionError> {
        self.list_names().await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn at_expressions_are_utc_and_round_up() {
        assert_eq!(
            super::at_expression(1_764_670_500_000),
            "at(2025-12-02T10:15:00)"
        );
        assert_eq!(
            super::at_expression(1_764_670_500_001),
            "at(2025-12-02T10:15:01)"
        );
    }
}
