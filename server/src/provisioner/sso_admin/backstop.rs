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
use crate::provisioner::{Assignment, Backstop, ProvisionError};
use async_trait::async_trait;
use aws_sdk_scheduler::error::ProvideErrorMetadata;
use aws_sdk_scheduler::types::{
    ActionAfterCompletion, FlexibleTimeWindow, FlexibleTimeWindowMode, ScheduleState, Target,
};
use sha2::{Digest, Sha256};

/// The universal target that deletes an account assignment.
pub const DELETE_TARGET: &str = "arn:aws:scheduler:::aws-sdk:ssoadmin:deleteAccountAssignment";

pub struct SchedulerBackstop {
    client: aws_sdk_scheduler::Client,
    instance_arn: String,
    settings: BackstopSettings,
}

impl SchedulerBackstop {
    pub async fn connect(
        config: &AwsConfig,
        settings: BackstopSettings,
        instance_arn: &str,
    ) -> Self {
        Self {
            client: aws_sdk_scheduler::Client::new(&sdk_config(config).await),
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
    fn schedule_name(&self, a: &Assignment) -> String {
        // The portal's own user id, always known (a grant that shared the assignment
        // never learned the AWS principal): every grant of the assignment names the same.
        let key = format!("{}|{}|{}", a.account_id, a.permission_set_arn, a.user_id);
        let digest = Sha256::digest(key.as_bytes());
        format!("portcullis-{}", &hex::encode(digest)[..40])
    }

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
        let created = self
            .client
            .create_schedule()
            .name(&name)
            .group_name(&self.settings.group)
            .schedule_expression(at_expression(at))
            .schedule_expression_timezone("UTC")
            .flexible_time_window(window.clone())
            .target(self.target(a)?)
            .action_after_completion(ActionAfterCompletion::Delete)
            .state(ScheduleState::Enabled)
            .description(&description)
            .send()
            .await;
        match created {
            Ok(_) => Ok(()),
            // There already (an earlier attempt, or another grant on the assignment): moved
            // to this time, the whole definition again.
            Err(e) if e.code() == Some("ConflictException") => self
                .client
                .update_schedule()
                .name(&name)
                .group_name(&self.settings.group)
                .schedule_expression(at_expression(at))
                .schedule_expression_timezone("UTC")
                .flexible_time_window(window)
                .target(self.target(a)?)
                .action_after_completion(ActionAfterCompletion::Delete)
                .state(ScheduleState::Enabled)
                .description(description)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify("UpdateSchedule", e)),
            Err(e) => Err(classify("CreateSchedule", e)),
        }
    }

    async fn disarm(&self, a: &Assignment) -> Result<(), ProvisionError> {
        match self
            .client
            .delete_schedule()
            .name(self.schedule_name(a))
            .group_name(&self.settings.group)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(()),
            Err(e) => Err(classify("DeleteSchedule", e)),
        }
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
